package epp

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/extproc"
)

// agentFlowConfig lets one request in flight at a time; agent-identity
// makes each Claude Code session a flow, and the flows take turns.
const agentFlowConfig = `--config-text=apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
featureGates: [flowControl]
plugins:
- type: concurrency-detector
  parameters: {maxConcurrency: 1}
- type: random-picker
- type: agent-identity
- type: round-robin-fairness-policy
saturationDetector: {pluginRef: concurrency-detector}
schedulingProfiles:
- name: default
  plugins: [{pluginRef: random-picker}]
flowControl:
  maxRequests: 10
  defaultPriorityBand: {fairnessPolicyRef: round-robin-fairness-policy}
`

// agentRoute opens a stream for a request of a Claude Code session (no
// fairness header) and, once it is routed, sends the session and the
// function that ends its response on routed.
func (r *running) agentRoute(t *testing.T, session string, routed chan<- agentHeld) {
	s, err := r.client.Open(context.Background())
	if err != nil {
		t.Error(err)
		return
	}
	req := extproc.Request{Method: "POST", Path: "/v1/messages", Body: []byte(`{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`),
		Headers: http.Header{"content-type": {"application/json"}, "x-claude-code-session-id": {session}}}
	d, err := s.SendRequest(context.Background(), req)
	if err != nil || d.Immediate != nil {
		t.Errorf("session %s: request not routed: %v %+v", session, err, d)
		_ = s.Close()
		return
	}
	routed <- agentHeld{session: session, release: func() {
		if _, err := s.PlayResponse(context.Background(), extproc.Response{Status: 200,
			Headers: http.Header{"content-type": {"application/json"}}, Body: []byte(`{"type":"message","content":[]}`)}); err != nil {
			t.Errorf("session %s: response: %v", session, err)
		}
		_ = s.Close()
	}}
}

type agentHeld struct {
	session string
	release func()
}

// TestAgentSessionsAreSeparateFlows: with agent-identity and round-robin
// fairness, a busy session's queued requests do not hold back another
// session's: each session is its own flow, and the quiet one goes as soon
// as its turn comes, not behind everything the busy one queued first.
func TestAgentSessionsAreSeparateFlows(t *testing.T) {
	r := startEPP(t, 1, 0, agentFlowConfig)
	routed := make(chan agentHeld, 8)
	next := func() agentHeld {
		t.Helper()
		select {
		case h := <-routed:
			return h
		case <-time.After(10 * time.Second):
			t.Fatal("no waiting request was released")
			return agentHeld{}
		}
	}
	go r.agentRoute(t, "busy", routed)
	first := next() // in flight: the pool is now saturated
	for i := range 3 {
		go r.agentRoute(t, "busy", routed)
		eventually(t, "busy requests wait", func() bool { return r.queued(t, "agent:busy") == i+1 })
	}
	go r.agentRoute(t, "quiet", routed)
	eventually(t, "the quiet request waits", func() bool { return r.queued(t, "agent:quiet") == 1 })

	var fc flowControlState
	r.debugJSON(t, flowControlPath, &fc)
	var flows []string
	for _, b := range fc.Bands {
		for _, f := range b.Flows {
			flows = append(flows, f.ID)
		}
	}
	slices.Sort(flows)
	if !slices.Equal(flows, []string{"agent:busy", "agent:quiet"}) {
		t.Errorf("flows %v, want one per session", flows)
	}

	release := first.release
	var order []string
	for range 4 {
		release()
		h := next()
		order = append(order, h.session)
		release = h.release
	}
	release()
	if i := slices.Index(order, "quiet"); i < 0 || i > 1 {
		t.Errorf("dispatch order %v: the quiet session waited behind the busy one's queue", order)
	}
}
