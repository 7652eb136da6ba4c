package scorers

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/profiles"
	"github.com/openepp/openepp/pkg/scheduler"
)

// scTopPicker picks the highest total, the first on ties.
type scTopPicker struct{}

func (scTopPicker) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: "top-picker", Name: "top-picker"}
}

func (scTopPicker) Pick(_ context.Context, _ *scheduler.State, _ *scheduler.Request, scored []scheduler.Scored) ([]*endpoint.Endpoint, error) {
	best := scored[0]
	for _, s := range scored[1:] {
		if s.Score > best.Score {
			best = s
		}
	}
	return []*endpoint.Endpoint{best.Endpoint}, nil
}

// TestWithScheduler drives the stateful scorers through the real scheduler,
// which discovers their hooks by interface: in-flight requests spread load
// until they complete, and the session token pins the next request.
func TestWithScheduler(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(3, nil)
	h := scHandle(newSCClock(), func() []*endpoint.Endpoint { return eps })
	active := mustBuild[*ActiveRequests](t, ActiveRequestsRegistration(), "", h)
	session := mustBuild[*SessionAffinity](t, SessionAffinityRegistration(), "", h)
	profile := &scheduler.Profile{Name: "default", Picker: scTopPicker{},
		Scorers: []scheduler.WeightedScorer{{Scorer: active, Weight: 1}, {Scorer: session, Weight: 10}}}
	sched, err := scheduler.New(scheduler.Options{Handler: profiles.NewSingle("single"), Profiles: []*scheduler.Profile{profile},
		Plugins: []scheduler.Plugin{active, session}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	type flight struct {
		state *scheduler.State
		req   *scheduler.Request
	}
	var open []flight
	var picked []string
	for range 3 {
		st, req := sched.NewState(), scRequest(20, nil)
		res, err := sched.Schedule(scCtx, st, req, eps)
		if err != nil {
			t.Fatal(err)
		}
		sched.PreRequest(scCtx, st, req, res)
		picked = append(picked, res.Targets()[0].Name)
		open = append(open, flight{st, req})
	}
	if diff := cmp.Diff([]string{"ep-0", "ep-1", "ep-2"}, picked); diff != "" {
		t.Errorf("in-flight requests should spread (-want +got):\n%s", diff)
	}
	var token string
	for _, f := range open {
		resp := &scheduler.Response{StatusCode: 200}
		sched.ResponseHeaders(scCtx, f.state, f.req, resp)
		sched.ResponseComplete(scCtx, f.state, f.req, resp)
		token = resp.AddHeaders["x-session-token"] // ep-2's
	}
	if n, _ := active.Tracker().Size(); n != 0 {
		t.Fatalf("%d requests still in flight after completion", n)
	}
	st, req := sched.NewState(), scRequest(20, map[string]string{"x-session-token": token})
	res, err := sched.Schedule(scCtx, st, req, eps)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Targets()[0].Name; got != "ep-2" {
		t.Errorf("session request went to %s, want ep-2", got)
	}
}
