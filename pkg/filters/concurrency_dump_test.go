package filters

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// TestConcurrencyDetectorDumpState checks the JSON of DumpState after
// requests went through the hooks: the in-flight books by endpoint name
// (address for an endpoint no longer in the pool) beside the capacities.
func TestConcurrencyDetectorDumpState(t *testing.T) {
	t.Parallel()
	a, b, gone := ep("a", "10.0.0.1", nil, nil), ep("b", "10.0.0.2", nil, nil), ep("gone", "10.0.0.3", nil, nil)
	h := &scheduler.Handle{Endpoints: func() []*endpoint.Endpoint { return []*endpoint.Endpoint{a, b} }}
	p, err := ConcurrencyDetectorFactory("c", []byte(`{"concurrencyMode":"hybrid","maxConcurrency":4,"headroom":0.5}`), h)
	if err != nil {
		t.Fatal(err)
	}
	d := p.(*ConcurrencyDetector)
	sendN(d, a, 2, 100)
	finish(d, send(d, a, 7), scheduler.Response{EndOfStream: true})
	send(d, gone, 30)

	got := plugintest.Dumped(t, d)
	want := map[string]any{
		"requests": 3.0, "tokens": 230.0, "tokensTracked": true, "requestTimeoutSeconds": 3600.0,
		"endpoints": map[string]any{
			"a":             map[string]any{"requests": 2.0, "tokens": 200.0},
			"10.0.0.3:8000": map[string]any{"requests": 1.0, "tokens": 30.0},
		},
		"moreEndpoints":   0.0,
		"concurrencyMode": "hybrid", "maxConcurrency": 4.0, "maxTokenConcurrency": 1000000.0, "headroom": 0.5, "kvCacheTarget": 0.0,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}
}
