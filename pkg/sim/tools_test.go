package sim

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/openepp/openepp/pkg/sim/tokenize"
)

// TestChatToolsRender: chat tools are rendered after a leading system
// message's text (else in a system turn of their own, first), so requests
// with the same system prompt and other tools share the system prompt's
// tokens and nothing after, as the EPP's prefix index assumes.
func TestChatToolsRender(t *testing.T) {
	const system = "You are a careful coding agent. Follow the repository's style."
	msgs := json.RawMessage(`[{"role":"system","content":"` + system + `"},{"role":"user","content":"fix the bug"}]`)
	bash := json.RawMessage(`[{"type":"function","function":{"name":"bash","parameters":{}}}]`)
	edit := json.RawMessage(`[{"type":"function","function":{"name":"edit","parameters":{}}}]`)
	render := func(msgs, tools json.RawMessage) []uint32 {
		t.Helper()
		p, err := parseMessages(msgs, tools, chatTemplate{})
		if err != nil {
			t.Fatal(err)
		}
		return p[0]
	}
	a, b, again := render(msgs, bash), render(msgs, edit), render(msgs, bash)
	if !slices.Equal(a, again) {
		t.Fatal("the same tools rendered differently")
	}
	shared := 0
	for shared < min(len(a), len(b)) && a[shared] == b[shared] {
		shared++
	}
	head := len(tokenize.Append(nil, "<|im_start|>system\n"+system))
	if shared < head-1 || shared >= len(a)-1 {
		t.Errorf("other tools share %d of %d tokens; want the system prompt's (~%d) and not the rest", shared, len(a), head)
	}
	noSystem := render(json.RawMessage(`[{"role":"user","content":"fix the bug"}]`), bash)
	if want := tokenize.Append(nil, "<|im_start|>system\n# Tools\n"); !slices.Equal(noSystem[:len(want)-1], want[:len(want)-1]) {
		t.Error("without a system message the tools do not come first in a system turn")
	}
	for _, bad := range []string{`{"name":"bash"}`, `[{"type":"function","function":{}}]`, `[{"type":"retrieval"}]`, `[1]`} {
		if _, err := parseMessages(msgs, json.RawMessage(bad), chatTemplate{}); err == nil || !strings.Contains(err.Error(), "tools") {
			t.Errorf("tools %s: error %v, want one naming the tools", bad, err)
		}
	}
}
