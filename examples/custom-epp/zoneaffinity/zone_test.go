package zoneaffinity

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// clientInZ1 is the scorer on the zone label and a request of size bytes
// from a client in zone z1.
func clientInZ1(tb testing.TB, size int) (*Scorer, *scheduler.Request) {
	tb.Helper()
	s, err := New("z", Params{Header: "x-client-zone", Label: "zone"})
	if err != nil {
		tb.Fatal(err)
	}
	req := plugintest.Request("m", size)
	req.Headers["x-client-zone"] = "z1"
	return s, req
}

func TestConformance(t *testing.T) {
	s, req := clientInZ1(t, 100)
	plugintest.Scorer(t, s, req)
}

func TestScore(t *testing.T) {
	s, _ := New("z", Params{Header: "x-client-zone", Label: "zone"})
	eps := plugintest.Endpoints(4, 1) // zones z0, z1, z2, z0
	req := plugintest.Request("m", 10)
	req.Headers["x-client-zone"] = "z1"
	if d := cmp.Diff([]float64{0, 1, 0, 0}, s.Score(context.Background(), plugintest.State(1), req, eps)); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
	delete(req.Headers, "x-client-zone")
	if d := cmp.Diff([]float64{0.5, 0.5, 0.5, 0.5}, s.Score(context.Background(), plugintest.State(1), req, eps)); d != "" {
		t.Errorf("no zone (-want +got)\n%s", d)
	}
	if _, err := Factory("z", []byte(`{"header":""}`), nil); err == nil {
		t.Error("empty header accepted")
	}
}

// BenchmarkCost is what the scorer costs per decision, in time and as a
// multiple of a reference scorer (go test -bench Cost -benchmem).
func BenchmarkCost(b *testing.B) {
	s, req := clientInZ1(b, 1024)
	plugintest.Cost(b, s, req)
}
