package scorers

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// TestQueueDepthRelativeMinSpread: a queue difference small against the
// servers' load moves the score only part of the way; on idle servers, or
// with the parameter at 0 or upstream scoring asked for, min-max is kept.
func TestQueueDepthRelativeMinSpread(t *testing.T) {
	t.Parallel()
	upstream := &scheduler.Handle{UpstreamScoring: true}
	cases := []struct {
		name             string
		params           string
		h                *scheduler.Handle
		running, waiting []int
		want             []float64
	}{
		{name: "idle servers: one request is the whole difference", running: []int{0, 0}, waiting: []int{0, 1}, want: []float64{1, 0}},
		// mean load (40 + 42)/2 = 41, so a spread under 10.25 counts in part.
		{name: "busy servers: two requests are a fifth of it", running: []int{40, 40}, waiting: []int{0, 2}, want: []float64{1, 1 - 2/10.25}},
		{name: "a spread past the floor is min-max", running: []int{40, 40}, waiting: []int{0, 30}, want: []float64{1, 0}},
		{name: "equal queues all score 1", running: []int{40, 10}, waiting: []int{3, 3}, want: []float64{1, 1}},
		{name: "a larger fraction", params: `{"relativeMinSpread":1}`, running: []int{40, 40}, waiting: []int{0, 30}, want: []float64{1, 1 - 30/55.0}},
		{name: "zero restores min-max", params: `{"relativeMinSpread":0}`, running: []int{40, 40}, waiting: []int{0, 2}, want: []float64{1, 0}},
		{name: "upstream scoring restores min-max", h: upstream, running: []int{40, 40}, waiting: []int{0, 2}, want: []float64{1, 0}},
		{name: "an explicit value beats upstream scoring", params: `{"relativeMinSpread":0.25}`, h: upstream, running: []int{40, 40}, waiting: []int{0, 2}, want: []float64{1, 1 - 2/10.25}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := mustBuild[*QueueDepth](t, QueueDepthRegistration(), tc.params, tc.h)
			eps := scEndpoints(len(tc.waiting), func(i int, m *endpoint.Metrics) {
				m.RunningRequestsSize, m.WaitingQueueSize = tc.running[i], tc.waiting[i]
			})
			if diff := cmp.Diff(tc.want, s.Score(scCtx, scState(), nil, eps), approx); diff != "" {
				t.Errorf("scores (-want +got):\n%s", diff)
			}
		})
	}
}

func TestQueueDepthRelativeMinSpreadRefused(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{`{"relativeMinSpread":-0.1}`, `{"relativeMinSpread":"a quarter"}`, `{"relativeMinSpread":1e300}`} {
		_, err := QueueDepthFactory("q", json.RawMessage(raw), nil)
		if err == nil || !strings.Contains(err.Error(), "relativeMinSpread") {
			t.Errorf("%s: %v, want an error naming relativeMinSpread", raw, err)
		}
	}
}
