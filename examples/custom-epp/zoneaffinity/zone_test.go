package zoneaffinity

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

func TestConformance(t *testing.T) {
	s, err := New("z", Params{Header: "x-client-zone", Label: "zone"})
	if err != nil {
		t.Fatal(err)
	}
	req := plugintest.Request("m", 100)
	req.Headers["x-client-zone"] = "z1"
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
