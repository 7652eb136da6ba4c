package models

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// TestResponderDumpState checks the plugin-state view: which endpoints
// list which model, adapters with their parent, and the uncollected ones.
func TestResponderDumpState(t *testing.T) {
	t.Parallel()
	r, _ := newResponder(t)
	eps := []*endpoint.Endpoint{
		serving(t, "b", lists("base", "lora-b<base")),
		serving(t, "c", ""),
		serving(t, "a", lists("base", "lora-a<base")),
	}
	r.pool = func() []*endpoint.Endpoint { return eps }
	want := map[string]any{
		"collected": 2.0, "uncollected": []any{"c"}, "moreUncollected": 0.0, "moreModels": 0.0,
		"models": map[string]any{
			"base":   map[string]any{"endpoints": []any{"a", "b"}},
			"lora-a": map[string]any{"parent": "base", "endpoints": []any{"a"}},
			"lora-b": map[string]any{"parent": "base", "endpoints": []any{"b"}},
		},
	}
	if diff := cmp.Diff(want, plugintest.Dumped(t, r)); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}
}

// TestResponderDumpStateCapped: a pool of many adapters is summarised.
func TestResponderDumpStateCapped(t *testing.T) {
	t.Parallel()
	r, _ := newResponder(t)
	var eps []*endpoint.Endpoint
	for i := range 150 {
		eps = append(eps, serving(t, fmt.Sprintf("s%03d", i), lists("base", fmt.Sprintf("lora-%03d<base", i))))
	}
	r.pool = func() []*endpoint.Endpoint { return eps }
	st := r.DumpState().(ResponderState)
	if len(st.Models) != 100 || st.MoreModels != 51 || st.Collected != 150 {
		t.Fatalf("%d models listed, %d more, %d collected", len(st.Models), st.MoreModels, st.Collected)
	}
	if b := st.Models["base"]; len(b.Endpoints) != 100 || b.MoreEndpoints != 50 {
		t.Errorf("base: %d endpoints listed, %d more", len(b.Endpoints), b.MoreEndpoints)
	}
}
