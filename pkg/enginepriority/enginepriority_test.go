package enginepriority

import (
	"strings"
	"testing"

	"github.com/openepp/openepp/pkg/endpoint"
)

func TestParseOrders(t *testing.T) {
	t.Parallel()
	got, err := ParseOrders(" sglang = lower-first, my-vllm=lower-first,vllm=none ,")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Order{"sglang": LowerFirst, "my-vllm": LowerFirst, "vllm": None}
	for engine, o := range want {
		if got[engine] != o {
			t.Errorf("order of %s = %v, want %v", engine, got[engine], o)
		}
	}
	if def, _ := ParseOrders(""); def["vllm"] != LowerFirst || def["sglang"] != HigherFirst || len(def) != 2 {
		t.Errorf("defaults = %v", def)
	}
	for _, bad := range []string{"vllm", "=lower-first", "vllm=upwards"} {
		if _, err := ParseOrders(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("ParseOrders(%q) = %v, want an error naming it", bad, err)
		}
	}
}

func TestValue(t *testing.T) {
	t.Parallel()
	w := New(func(labels map[string]string) string { return labels["engine"] }, DefaultOrders())
	for _, tc := range []struct {
		engine   string
		priority int
		want     int
		ok       bool
	}{
		{"vllm", 10, -10, true},
		{"vllm", -2, 2, true},
		{"sglang", 10, 10, true},
		{"trtllm-serve", 10, 0, false},
		{"", 10, 0, false},
	} {
		got, ok := w.Value(endpoint.New(endpoint.Spec{Labels: map[string]string{"engine": tc.engine}}), tc.priority)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s, priority %d: Value = %d, %v; want %d, %v", tc.engine, tc.priority, got, ok, tc.want, tc.ok)
		}
	}
	if got := w.Describe(); got != "sglang=higher-first vllm=lower-first" {
		t.Errorf("Describe = %q", got)
	}
}
