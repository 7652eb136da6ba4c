package plugins

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// agentSessionConfig keys session-affinity-scorer's sessions on the
// agent-identity attribute, as llm-d's configs for coding agents do.
const agentSessionConfig = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: agent-identity
- type: queue-scorer
- type: session-affinity-scorer
  parameters:
    strategy: session_id
    sessionIdConfig:
      sources: [{attribute: agent-identity}]
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
  - pluginRef: session-affinity-scorer
    weight: 10
`

// routeWith schedules one request with headers over eps, runs PreRequest
// and returns the primary target.
func routeWith(t *testing.T, s *scheduler.Scheduler, eps []*endpoint.Endpoint, headers map[string]string) *endpoint.Endpoint {
	t.Helper()
	ctx := context.Background()
	req := &scheduler.Request{ID: "r", Model: "m", Headers: headers, Attributes: s.Attributes(ctx, headers)}
	st := s.NewState()
	res, err := s.Schedule(ctx, st, req, eps)
	if err != nil {
		t.Fatal(err)
	}
	s.PreRequest(ctx, st, req, res)
	return res.Targets()[0]
}

// queueAllBut gives every endpoint but idle a waiting queue of depth.
func queueAllBut(eps []*endpoint.Endpoint, idle *endpoint.Endpoint, depth int) {
	for _, e := range eps {
		q := depth
		if e == idle {
			q = 0
		}
		e.SetMetrics(&endpoint.Metrics{WaitingQueueSize: q, UpdateTime: time.Now()})
	}
}

func buildText(text string, eps []*endpoint.Endpoint) (*scheduler.Scheduler, error) {
	reg, err := InTree()
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load([]byte(text))
	if err != nil {
		return nil, err
	}
	built, err := config.BuildWith(cfg, config.BuildOptions{Registry: reg, Seed: 7, Handle: &scheduler.Handle{
		Log: logr.Discard(), Clock: scheduler.RealClock{}, Endpoints: func() []*endpoint.Endpoint { return eps },
	}})
	if err != nil {
		return nil, err
	}
	return built.Scheduler, nil
}

// TestSessionAffinityByAgentIdentity: a coding agent's session stays on its
// endpoint while another has the shorter queue, keyed by the session header
// agent-identity reads; a config naming the attribute without the plugin
// that publishes it is refused.
func TestSessionAffinityByAgentIdentity(t *testing.T) {
	t.Parallel()
	eps := plugintest.Endpoints(4, 1)
	s, err := buildText(agentSessionConfig, eps)
	if err != nil {
		t.Fatal(err)
	}
	route := func(session string) *endpoint.Endpoint {
		return routeWith(t, s, eps, map[string]string{"x-claude-code-session-id": session})
	}
	load := func(idle *endpoint.Endpoint) { queueAllBut(eps, idle, 5) }
	load(eps[2])
	first := route("session-a")
	if first != eps[2] {
		t.Fatalf("first request went to %s, want the idle %s", first, eps[2])
	}
	load(eps[0])
	if got := route("session-a"); got != first {
		t.Errorf("the session's next request went to %s, want its endpoint %s", got, first)
	}
	if got := route("session-b"); got != eps[0] {
		t.Errorf("another session went to %s, want the idle %s", got, eps[0])
	}

	without := strings.Replace(agentSessionConfig, "- type: agent-identity\n", "", 1)
	_, err = buildText(without, eps)
	const want = `plugin "session-affinity-scorer" reads the request attribute "agent-identity", which no configured plugin publishes`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("config without agent-identity: err = %v, want it to contain %q", err, want)
	}
}
