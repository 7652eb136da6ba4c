package requestcontrol

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

func agentIdentity(t *testing.T, params string) *AgentIdentity {
	t.Helper()
	var raw json.RawMessage
	if params != "" {
		raw = json.RawMessage(params)
	}
	p, err := AgentIdentityFactory("agents", raw, nil)
	if err != nil {
		t.Fatalf("parameters %s: %v", params, err)
	}
	return p.(*AgentIdentity)
}

func TestAgentIdentity(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("s", 200)
	tests := []struct {
		name    string
		params  string
		headers map[string]string
		want    string
	}{
		{name: "claude code", headers: map[string]string{"x-claude-code-session-id": "abc"}, want: "agent:abc"},
		{name: "session affinity", headers: map[string]string{"x-session-affinity": "s-1"}, want: "agent:s-1"},
		{name: "first listed header wins", want: "agent:cc",
			headers: map[string]string{"x-session-affinity": "aff", "x-claude-code-session-id": "cc"}},
		{name: "blank value skipped", want: "agent:aff",
			headers: map[string]string{"x-claude-code-session-id": " \t ", "x-session-affinity": "aff"}},
		{name: "trimmed", headers: map[string]string{"x-claude-code-session-id": "  abc \t"}, want: "agent:abc"},
		{name: "no header", headers: map[string]string{"x-session-id": "abc"}, want: ""},
		{name: "nil headers", want: ""},
		{name: "cut to 128 bytes", headers: map[string]string{"x-claude-code-session-id": long}, want: "agent:" + long[:MaxAgentIDBytes]},
		{name: "cut after trimming", headers: map[string]string{"x-claude-code-session-id": "   " + long}, want: "agent:" + long[:MaxAgentIDBytes]},
		{name: "custom headers, matched case-insensitively", params: `{"headers": [" X-Agent-Session ", "X-Session-Id"]}`,
			headers: map[string]string{"x-claude-code-session-id": "cc", "x-session-id": "sid"}, want: "agent:sid"},
		{name: "custom prefix", params: `{"prefix": "cc/"}`, headers: map[string]string{"x-claude-code-session-id": "abc"}, want: "cc/abc"},
		{name: "empty prefix", params: `{"prefix": ""}`, headers: map[string]string{"x-claude-code-session-id": "abc"}, want: "abc"},
		{name: "empty prefix keeps the default headers", params: `{"prefix": ""}`, headers: map[string]string{"x-session-affinity": "a"}, want: "a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := agentIdentity(t, tc.params).FairnessID(context.Background(), tc.headers); got != tc.want {
				t.Errorf("FairnessID = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestAgentIdentityCutsAtACharacter: a session ID cut at the bound never
// ends in half a UTF-8 sequence.
func TestAgentIdentityCutsAtACharacter(t *testing.T) {
	t.Parallel()
	id := strings.Repeat("a", MaxAgentIDBytes-1) + "é and more" // é spans bytes 127 and 128
	got := agentIdentity(t, `{"prefix": ""}`).FairnessID(context.Background(), map[string]string{"x-claude-code-session-id": id})
	if want := strings.Repeat("a", MaxAgentIDBytes-1); got != want || !utf8.ValidString(got) {
		t.Errorf("FairnessID = %q (%d bytes), want %d bytes of a", got, len(got), len(want))
	}
}

func TestAgentIdentityDefaults(t *testing.T) {
	t.Parallel()
	for _, params := range []string{"", "null", "{}"} {
		a := agentIdentity(t, params)
		if strings.Join(a.headers, ",") != "x-claude-code-session-id,x-session-affinity" || a.prefix != "agent:" {
			t.Errorf("parameters %q: headers %v, prefix %q", params, a.headers, a.prefix)
		}
		if tn := a.TypedName(); tn.Type != AgentIdentityType || tn.Name != "agents" {
			t.Errorf("typed name %v", tn)
		}
	}
}

func TestAgentIdentityBadParams(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ params, want string }{
		{`{"headers": []}`, "headers: at least one header is required"},
		{`{"headers": null}`, "headers: at least one header is required"},
		{`{"headers": ["x-a", "  "]}`, "headers[1]: must not be empty"},
		{`{"header": ["x-a"]}`, `unknown field "header"`},
		{`{"prefix": 3}`, "cannot unmarshal number"},
	} {
		_, err := AgentIdentityFactory("agents", json.RawMessage(tc.params), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parameters %s: error %v, want one containing %q", tc.params, err, tc.want)
		}
	}
}

func TestAgentIdentityContract(t *testing.T) {
	t.Parallel()
	plugintest.FairnessSource(t, agentIdentity(t, ""), map[string]string{"x-claude-code-session-id": "abc", "x-request-id": "r"})
	plugintest.FairnessSource(t, agentIdentity(t, ""), map[string]string{"x-request-id": "r"})
}
