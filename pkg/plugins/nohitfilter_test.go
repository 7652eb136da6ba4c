package plugins

import (
	"fmt"
	"strings"
	"testing"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// TestNoHitLRUFilterSpreadsColdPrompts: with llm-d's no-hit-lru-filter
// (its prefix and in-flight producers added by the loader), four new
// prompts go to four different endpoints though the queue scorer alone
// would send them all to the one idle endpoint; a repeat of the first is
// warm and is not narrowed.
func TestNoHitLRUFilterSpreadsColdPrompts(t *testing.T) {
	t.Parallel()
	eps := plugintest.Endpoints(4, 1)
	s, err := buildText(`apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: no-hit-lru-filter
- type: queue-scorer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins: [{pluginRef: no-hit-lru-filter}, {pluginRef: queue-scorer}, {pluginRef: max-score-picker}]
`, eps)
	if err != nil {
		t.Fatal(err)
	}
	queueAllBut(eps, eps[3], 5)
	prompt := func(i int) *scheduler.Request {
		body, err := request.Parse(request.Completions, []byte(fmt.Sprintf(`{"model":"m","prompt":%q}`, strings.Repeat(fmt.Sprintf("prompt %d ", i), 200))))
		if err != nil {
			t.Fatal(err)
		}
		return &scheduler.Request{ID: fmt.Sprint(i), Model: "m", Body: body}
	}
	seen := map[*endpoint.Endpoint]bool{}
	for i := range 4 {
		seen[route(t, s, prompt(i), eps).Targets()[0]] = true
	}
	if len(seen) != 4 {
		t.Errorf("four cold prompts went to %d endpoints, want 4", len(seen))
	}
	// The first prompt went to the idle eps[3], now the least recent; a
	// narrowed repeat would go back there, an untouched one to the idle.
	queueAllBut(eps, eps[1], 5)
	if got := route(t, s, prompt(0), eps).Targets()[0]; got != eps[1] {
		t.Errorf("warm repeat went to %s, want the idle %s (not narrowed)", got.HostPort, eps[1].HostPort)
	}
}
