package server_test

import (
	"testing"

	"github.com/openepp/openepp/pkg/requestcontrol"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/server"
)

func agentIdentity(t *testing.T) scheduler.Plugin {
	t.Helper()
	p, err := requestcontrol.AgentIdentityFactory(requestcontrol.AgentIdentityType, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAgentSessionIsTheFairnessID runs agent-identity in a real server: a
// Claude Code session header becomes the fairness ID that admission (flow
// control) and the plugins see and the metrics count under; a fairness
// header still wins for the flow, while the published agent-identity
// attribute stays the session; without the plugin the session header means
// nothing.
func TestAgentSessionIsTheFairnessID(t *testing.T) {
	t.Parallel()
	const session = "x-claude-code-session-id"
	tests := []struct {
		name    string
		plugins []scheduler.Plugin
		kv      []string
		want    string
		attr    string // the agent-identity attribute
	}{
		{name: "session", plugins: []scheduler.Plugin{agentIdentity(t)}, kv: []string{session, "abc"}, want: "agent:abc", attr: "agent:abc"},
		{name: "x-session-affinity", plugins: []scheduler.Plugin{agentIdentity(t)}, kv: []string{"X-Session-Affinity", "aff"}, want: "agent:aff", attr: "agent:aff"},
		{name: "fairness header wins", plugins: []scheduler.Plugin{agentIdentity(t)},
			kv: []string{session, "abc", "x-gateway-inference-fairness-id", "tenant-a"}, want: "tenant-a", attr: "agent:abc"},
		{name: "llm-d fairness header wins", plugins: []scheduler.Plugin{agentIdentity(t)},
			kv: []string{session, "abc", "x-llm-d-inference-fairness-id", "tenant-b"}, want: "tenant-b", attr: "agent:abc"},
		{name: "no session", plugins: []scheduler.Plugin{agentIdentity(t)}, want: "default-flow"},
		{name: "without the plugin", kv: []string{session, "abc"}, want: "default-flow"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := &gate{}
			h := start(t, setup{plugins: tc.plugins, server: server.Options{Admission: g}})
			d := h.route(t, post("/v1/completions", completion("hi"), append(tc.kv, "x-request-id", "r1")...))
			if d.Immediate != nil {
				t.Fatalf("refused: %+v", d.Immediate)
			}
			h.waitIdle(t)
			if asked, _, _ := g.counts(); asked != 1 {
				t.Fatalf("admission asked %d times, want once", asked)
			}
			if got := g.asked[0].FairnessID; got != tc.want {
				t.Errorf("admission saw fairness %q, want %q", got, tc.want)
			}
			seen := h.rec.request(t, "r1")
			if got := seen.FairnessID; got != tc.want {
				t.Errorf("plugins saw fairness %q, want %q", got, tc.want)
			}
			if got := seen.Attribute(requestcontrol.AgentIdentityAttribute); got != tc.attr {
				t.Errorf("plugins saw agent-identity attribute %q, want %q", got, tc.attr)
			}
			if got := series(t, h.reg, "llm_d_epp_request_total", map[string]string{"fairness_id": tc.want}); got != 1 {
				t.Errorf("llm_d_epp_request_total{fairness_id=%q} = %v, want 1", tc.want, got)
			}
		})
	}
}

// TestRefusedAgentRequestCountedUnderItsSession: a request refused before
// it is understood is counted under its session's fairness ID too.
func TestRefusedAgentRequestCountedUnderItsSession(t *testing.T) {
	t.Parallel()
	h := start(t, setup{plugins: []scheduler.Plugin{agentIdentity(t)}})
	d := h.exchange(t, post("/v1/completions", []byte(`{"model":`), "x-claude-code-session-id", "abc"))
	if d.Immediate == nil || d.Immediate.Status != 400 {
		t.Fatalf("malformed JSON answered %+v, want a 400", d)
	}
	h.waitIdle(t)
	if got := series(t, h.reg, "llm_d_epp_request_error_total", map[string]string{"fairness_id": "agent:abc", "error_code": "400"}); got != 1 {
		t.Errorf("llm_d_epp_request_error_total{fairness_id=agent:abc} = %v, want 1", got)
	}
}
