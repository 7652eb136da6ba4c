package inflight_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/inflight"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// epoch is when every test starts.
var epoch = plugintest.Epoch

// fakeClock is a clock the test moves by hand; safe for concurrent use.
type fakeClock struct{ elapsed atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return epoch.Add(time.Duration(c.elapsed.Load())) }
func (c *fakeClock) Advance(d time.Duration) { c.elapsed.Add(int64(d)) }

// books returns an empty tracker with a long TTL and n endpoints.
func books(n int) (*inflight.Tracker, []*endpoint.Endpoint) {
	return inflight.New(nil, time.Hour), plugintest.Endpoints(n, 1)
}

// newState is a fresh request: every call returns a distinct key.
func newState() *scheduler.State { return plugintest.State(1) }

// loads returns Of for each endpoint as {requests, tokens} pairs.
func loads(tr *inflight.Tracker, eps ...*endpoint.Endpoint) [][2]int {
	out := make([][2]int, len(eps))
	for i, e := range eps {
		out[i][0], out[i][1] = tr.Of(e.HostPort)
	}
	return out
}

// checkEmpty fails unless tr tracks nothing.
func checkEmpty(t *testing.T, tr *inflight.Tracker) {
	t.Helper()
	if flights, endpoints := tr.Size(); flights != 0 || endpoints != 0 {
		t.Errorf("leaked %d requests on %d endpoints", flights, endpoints)
	}
}

func TestStartFinish(t *testing.T) {
	t.Parallel()
	tr, eps := books(2)
	st, other := newState(), newState()
	tr.Start(st, eps[0].HostPort, 10)
	tr.Start(st, eps[1].HostPort, 99) // the same request again: ignored
	tr.Start(other, eps[0].HostPort, 7)
	if diff := cmp.Diff([][2]int{{2, 17}, {0, 0}}, loads(tr, eps...)); diff != "" {
		t.Fatalf("after Start (-want +got):\n%s", diff)
	}
	if !tr.Finish(st) {
		t.Error("Finish of a started request released nothing")
	}
	for name, s := range map[string]*scheduler.State{"repeated": st, "unknown": newState(), "nil": nil} {
		if tr.Finish(s) {
			t.Errorf("Finish of a %s request released something", name)
		}
	}
	if diff := cmp.Diff([][2]int{{1, 7}, {0, 0}}, loads(tr, eps...)); diff != "" {
		t.Errorf("after Finish, exactly the finished request is released (-want +got):\n%s", diff)
	}
	tr.Finish(other)
	checkEmpty(t, tr)
}

func TestMoveTo(t *testing.T) {
	t.Parallel()
	eps := plugintest.Endpoints(2, 1)
	from, to := eps[0].HostPort, eps[1].HostPort
	tests := []struct {
		name    string
		served  string
		unknown bool // move a request that was never started
		want    [][2]int
	}{
		{name: "to the fallback", served: to, want: [][2]int{{0, 0}, {1, 9}}},
		{name: "spaces trimmed", served: " " + to + " ", want: [][2]int{{0, 0}, {1, 9}}},
		{name: "not reported", served: "  ", want: [][2]int{{1, 9}, {0, 0}}},
		{name: "served where counted", served: from, want: [][2]int{{1, 9}, {0, 0}}},
		{name: "unknown request", served: to, unknown: true, want: [][2]int{{1, 9}, {0, 0}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tr := inflight.New(nil, time.Hour)
			st := newState()
			tr.Start(st, from, 9)
			moved := st
			if tc.unknown {
				moved = newState()
			}
			tr.MoveTo(moved, tc.served)
			if diff := cmp.Diff(tc.want, loads(tr, eps...)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			tr.Finish(st)
			checkEmpty(t, tr)
		})
	}
}

func TestSetTokens(t *testing.T) {
	t.Parallel()
	tr, eps := books(2)
	st := newState()
	tr.Start(st, eps[0].HostPort, 250)
	tr.SetTokens(newState(), 1) // unknown request: ignored
	tr.SetTokens(st, 100)
	tr.SetTokens(st, 1) // only the first report counts
	tr.MoveTo(st, eps[1].HostPort)
	if diff := cmp.Diff([][2]int{{0, 0}, {1, 100}}, loads(tr, eps...)); diff != "" {
		t.Errorf("reported usage, moved (-want +got):\n%s", diff)
	}
	tr.Finish(st)
	checkEmpty(t, tr)
}

func TestReaders(t *testing.T) {
	t.Parallel()
	tr, eps := books(4)
	requests, tokens := make([]float64, 3), make([]float64, 3)
	tr.Requests(eps[:3], requests)
	if diff := cmp.Diff([]float64{0, 0, 0}, requests); diff != "" {
		t.Errorf("idle Requests (-want +got):\n%s", diff)
	}
	tr.Start(newState(), eps[0].HostPort, 5)
	tr.Start(newState(), eps[0].HostPort, 6)
	tr.Start(newState(), eps[2].HostPort, 7)
	tr.Start(newState(), eps[3].HostPort, 1000) // not among the endpoints read
	tr.Requests(eps[:3], requests)
	tr.Tokens(eps[:3], tokens)
	r, tk := tr.Sum(eps[:3])
	got := struct {
		Requests, Tokens []float64
		Sum              [2]int
	}{requests, tokens, [2]int{r, tk}}
	want := struct {
		Requests, Tokens []float64
		Sum              [2]int
	}{[]float64{2, 0, 1}, []float64{11, 0, 7}, [2]int{3, 18}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if r, tk := tr.Sum(nil); r != 0 || tk != 0 {
		t.Errorf("Sum(nil) = %d, %d, want 0, 0", r, tk)
	}
}

func TestSweepExpires(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{}
	tr := inflight.New(clock, 2*time.Minute)
	e := plugintest.Endpoints(1, 1)[0]
	old, young := newState(), newState()
	tr.Start(old, e.HostPort, 3)
	clock.Advance(time.Minute)
	tr.Start(young, e.HostPort, 4)
	clock.Advance(time.Minute) // old is exactly the TTL old
	if expired, departed := tr.Sweep(clock.Now(), nil); expired != 1 || departed != 0 {
		t.Fatalf("Sweep = %d expired, %d departed, want 1, 0", expired, departed)
	}
	// The expired request's late completion must not release the other.
	if tr.Finish(old) {
		t.Error("Finish released an expired request")
	}
	if diff := cmp.Diff([][2]int{{1, 4}}, loads(tr, e)); diff != "" {
		t.Errorf("after the late completion (-want +got):\n%s", diff)
	}
	tr.Finish(young)
	checkEmpty(t, tr)
}

func TestSweepForgetsDeparted(t *testing.T) {
	t.Parallel()
	tr, eps := books(2)
	gone := newState()
	tr.Start(gone, eps[0].HostPort, 5)
	tr.Start(newState(), eps[1].HostPort, 5)
	if _, departed := tr.Sweep(epoch, nil); departed != 0 {
		t.Errorf("nil pool (membership unknown) departed %d requests, want 0", departed)
	}
	if _, departed := tr.Sweep(epoch, eps[1:]); departed != 1 {
		t.Fatalf("departed = %d, want 1", departed)
	}
	// eps[0] comes back: it starts from zero and the old request's
	// completion must not drive it negative.
	if tr.Finish(gone) {
		t.Error("Finish released a request of a departed endpoint")
	}
	tr.Start(newState(), eps[0].HostPort, 2)
	if diff := cmp.Diff([][2]int{{1, 2}, {1, 5}}, loads(tr, eps...)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, departed := tr.Sweep(epoch, []*endpoint.Endpoint{}); departed != 2 {
		t.Errorf("empty pool departed = %d, want 2", departed)
	}
	checkEmpty(t, tr)
}

func TestNoLeak(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	tr, eps := books(10)
	var open []*scheduler.State
	for i := range 5000 {
		st := newState()
		tr.Start(st, eps[r.IntN(len(eps))].HostPort, 40+i%100)
		open = append(open, st)
		if r.IntN(3) == 0 {
			tr.MoveTo(st, eps[r.IntN(len(eps))].HostPort)
		}
		if r.IntN(4) == 0 {
			tr.SetTokens(st, r.IntN(500))
		}
		for len(open) > 0 && r.IntN(2) == 0 {
			j := r.IntN(len(open))
			tr.Finish(open[j])
			open[j] = open[len(open)-1]
			open = open[:len(open)-1]
		}
	}
	for _, st := range open {
		tr.Finish(st)
	}
	checkEmpty(t, tr)
}

// TestConcurrent runs every method at once, with a sweeper alongside as Run
// would; under -race it also checks the locking.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	tr := inflight.New(&fakeClock{}, time.Hour)
	eps := plugintest.Endpoints(20, 1)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			out := make([]float64, len(eps))
			for i := range 300 {
				st := newState()
				tr.Start(st, eps[(g+i)%len(eps)].HostPort, i)
				tr.MoveTo(st, eps[i%len(eps)].HostPort)
				tr.SetTokens(st, 5)
				tr.Requests(eps, out)
				tr.Tokens(eps, out)
				tr.Sum(eps)
				tr.Of(eps[g].HostPort)
				tr.Finish(st)
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			tr.Sweep(epoch, eps)
		}
	})
	wg.Wait()
	checkEmpty(t, tr)
}

// TestRun runs the background sweep for real: a short TTL, the fake clock
// moved past it, the handle's pool without one endpoint, and Run returning
// when its context ends.
func TestRun(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{}
	eps := plugintest.Endpoints(2, 1)
	h := &scheduler.Handle{Clock: clock, Endpoints: func() []*endpoint.Endpoint { return eps[:1] }}
	tr := inflight.New(clock, 20*time.Millisecond)
	expired, departed := newState(), newState()
	tr.Start(expired, eps[0].HostPort, 1)
	clock.Advance(time.Second)
	tr.Start(departed, eps[1].HostPort, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx, h, logr.Discard()) }()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if flights, _ := tr.Size(); flights == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the background sweep never released the requests")
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	checkEmpty(t, tr)
}

func TestPrimaryTarget(t *testing.T) {
	t.Parallel()
	eps := plugintest.Endpoints(2, 1)
	routed := func(targets ...*endpoint.Endpoint) *scheduler.Result {
		return &scheduler.Result{Primary: "p", Profiles: map[string]*scheduler.ProfileResult{"p": {Targets: targets}}}
	}
	tests := []struct {
		name   string
		result *scheduler.Result
		want   *endpoint.Endpoint
	}{
		{name: "nil result", result: nil},
		{name: "nothing scheduled", result: &scheduler.Result{}},
		{name: "no targets", result: routed()},
		{name: "first target", result: routed(eps[1], eps[0]), want: eps[1]},
	}
	for _, tc := range tests {
		if got := inflight.PrimaryTarget(tc.result); got != tc.want {
			t.Errorf("%s: PrimaryTarget = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func BenchmarkHooks(b *testing.B) {
	tr := inflight.New(nil, time.Hour)
	e := plugintest.Endpoints(1, 1)[0]
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			st := newState()
			tr.Start(st, e.HostPort, 100)
			tr.Finish(st)
		}
	})
}
