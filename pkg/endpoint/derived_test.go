package endpoint_test

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/openepp/openepp/pkg/endpoint"
)

var (
	lengthKey endpoint.DerivedKey[int]
	zoneKey   endpoint.DerivedKey[string]
)

// TestDerive: a value is computed once per endpoint and key, keys do not
// mix, and concurrent first uses agree on one value.
func TestDerive(t *testing.T) {
	t.Parallel()
	e := endpoint.New(endpoint.Spec{Name: "a", Address: "10.0.0.1", Port: 8000, Labels: map[string]string{"zone": "z1"}})
	var calls atomic.Int32
	length := func(e *endpoint.Endpoint) int { calls.Add(1); return len(e.Labels["zone"]) }
	zone := func(e *endpoint.Endpoint) string { return e.Labels["zone"] }
	var wg sync.WaitGroup
	got := make([]int, 8)
	for i := range got {
		wg.Add(1)
		go func() { defer wg.Done(); got[i] = endpoint.Derive(e, &lengthKey, length) }()
	}
	wg.Wait()
	for _, g := range got {
		if g != 2 {
			t.Fatalf("concurrent first uses: %v", got)
		}
	}
	before := calls.Load()
	if endpoint.Derive(e, &zoneKey, zone) != "z1" || endpoint.Derive(e, &lengthKey, length) != 2 || calls.Load() != before {
		t.Errorf("a second key mixed with the first, or the first was computed again (%d → %d calls)", before, calls.Load())
	}
	other := endpoint.New(endpoint.Spec{Name: "b", Address: "10.0.0.2", Port: 8000, Labels: map[string]string{"zone": "zone-2"}})
	if endpoint.Derive(other, &lengthKey, length) != 6 {
		t.Error("another endpoint got the first one's value")
	}
}
