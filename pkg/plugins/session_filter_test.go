package plugins

import (
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// sessionFilterConfig pins sessions with llm-d's session-affinity-filter
// in front of a load scorer.
const sessionFilterConfig = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: session-affinity-filter
  parameters:
    strategy: session_id
- type: queue-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: session-affinity-filter
  - pluginRef: queue-scorer
`

// TestSessionAffinityFilterPins: through a built config, a session stays on
// its endpoint however much longer that endpoint's queue grows, while new
// sessions follow the load; the filter leaves the scores to the scorers.
func TestSessionAffinityFilterPins(t *testing.T) {
	t.Parallel()
	eps := plugintest.Endpoints(4, 1)
	s, err := buildText(sessionFilterConfig, eps)
	if err != nil {
		t.Fatal(err)
	}
	route := func(session string) *endpoint.Endpoint {
		return routeWith(t, s, eps, map[string]string{"x-session-id": session})
	}
	queueAllBut(eps, eps[1], 3)
	if got := route("chat-1"); got != eps[1] {
		t.Fatalf("first request went to %s, want the idle %s", got.HostPort, eps[1].HostPort)
	}
	queueAllBut(eps, eps[3], 3)
	eps[1].SetMetrics(&endpoint.Metrics{WaitingQueueSize: 500, UpdateTime: time.Now()})
	for range 3 {
		if got := route("chat-1"); got != eps[1] {
			t.Fatalf("the session left its endpoint for %s", got.HostPort)
		}
	}
	if got := route("chat-2"); got != eps[3] {
		t.Errorf("a new session went to %s, want the idle %s", got.HostPort, eps[3].HostPort)
	}
}

// sessionProducerConfig is llm-d's newer session design: a producer binds
// sessions (here by cookie), the filter follows it by default.
const sessionProducerConfig = `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: session-id-producer
  parameters: {cookieName: llm-d-session, ttl: 1h, lruSize: 4096}
- type: session-affinity-filter
- type: queue-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: session-affinity-filter
  - pluginRef: queue-scorer
`

func TestSessionIDProducerThroughAConfig(t *testing.T) {
	t.Parallel()
	eps := plugintest.Endpoints(3, 1)
	s, err := buildText(sessionProducerConfig, eps)
	if err != nil {
		t.Fatal(err)
	}
	route := func(session string) *endpoint.Endpoint {
		return routeWith(t, s, eps, map[string]string{"cookie": "llm-d-session=" + session})
	}
	queueAllBut(eps, eps[0], 3)
	if got := route("a"); got != eps[0] {
		t.Fatalf("first request went to %s, want the idle %s", got.HostPort, eps[0].HostPort)
	}
	queueAllBut(eps, eps[2], 30)
	if got := route("a"); got != eps[0] {
		t.Errorf("the session left its endpoint for %s", got.HostPort)
	}
	if got := route("b"); got != eps[2] {
		t.Errorf("a new session went to %s, want the idle %s", got.HostPort, eps[2].HostPort)
	}
}
