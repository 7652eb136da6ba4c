package flowcontrol_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/flowcontrol"
)

type flowKey struct {
	flow     string
	priority int
}

// tally is an Observer that counts outcomes and keeps each flow's last
// reported depth.
type tally struct {
	mu       sync.Mutex
	outcomes map[flowcontrol.Outcome]int
	last     map[flowKey][2]int64
}

func newTally() *tally {
	return &tally{outcomes: map[flowcontrol.Outcome]int{}, last: map[flowKey][2]int64{}}
}

func (t *tally) Finished(_ flowcontrol.Request, o flowcontrol.Outcome, _ time.Duration) {
	t.mu.Lock()
	t.outcomes[o]++
	t.mu.Unlock()
}

func (t *tally) Depth(flowID string, priority, requests int, bytes int64) {
	t.mu.Lock()
	t.last[flowKey{flowID, priority}] = [2]int64{int64(requests), bytes}
	t.mu.Unlock()
}

// stressRun admits from many goroutines for d against a pool whose
// saturation and size jump about, with clients that give up at random. It
// returns the number of Admit calls and of nil results.
func stressRun(t *testing.T, c *flowcontrol.Controller, level *atomic.Uint64, pool *atomic.Int64, d time.Duration, during func()) (calls, admitted int64) {
	t.Helper()
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	wg.Go(func() {
		r := rand.New(rand.NewPCG(1, 2))
		for time.Now().Before(stop) {
			level.Store(math.Float64bits(r.Float64() * 1.3))
			pool.Store(int64(r.IntN(8)))
			c.Wake()
			time.Sleep(200 * time.Microsecond)
		}
	})
	// Workers go on until d has passed and during has returned, and each
	// makes at least one call that starts after it returned.
	var duringDone atomic.Bool
	if during == nil {
		duringDone.Store(true)
	} else {
		wg.Go(func() {
			time.Sleep(d / 2)
			during()
			duringDone.Store(true)
		})
	}
	var callCount, okCount atomic.Int64
	for w := range 32 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for i := 0; ; i++ {
				after := duringDone.Load()
				callCount.Add(1)
				if stressAdmit(t, c, r, w, i) {
					okCount.Add(1)
				}
				if after && !time.Now().Before(stop) {
					return
				}
			}
		})
	}
	wg.Wait()
	return callCount.Load(), okCount.Load()
}

// stressAdmit makes one random Admit call and checks its result's type.
func stressAdmit(t *testing.T, c *flowcontrol.Controller, r *rand.Rand, worker, i int) bool {
	req := flowcontrol.Request{
		FlowID:   fmt.Sprintf("f%d", r.IntN(12)),
		Priority: r.IntN(4) - 1,
		Bytes:    int64(r.IntN(2000)),
	}
	if r.IntN(10) == 0 {
		req.FlowID = fmt.Sprintf("once-%d-%d", worker, i) // many short-lived flows
	}
	if r.IntN(2) == 0 {
		req.SLODeadline = time.Now().Add(time.Duration(r.IntN(50)) * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(r.IntN(8000))*time.Microsecond)
	defer cancel()
	if r.IntN(4) == 0 {
		// Cancel at about the moment the dispatcher may release it.
		after := time.Duration(r.IntN(300)) * time.Microsecond
		go func() {
			time.Sleep(after)
			cancel()
		}()
	}
	err := c.Admit(ctx, req)
	if err == nil {
		return true
	}
	var fe *flowcontrol.Error
	if !errors.As(err, &fe) || fe.Outcome == flowcontrol.Dispatched || fe.Outcome > flowcontrol.RejectedShuttingDown {
		t.Errorf("Admit returned %v (%T)", err, err)
	}
	return false
}

func stressController(t *testing.T, obs flowcontrol.Observer) (*flowcontrol.Controller, *atomic.Uint64, *atomic.Int64) {
	t.Helper()
	level, pool := new(atomic.Uint64), new(atomic.Int64)
	c, err := flowcontrol.New(flowcontrol.Config{
		MaxRequests: 300, MaxBytes: 200_000, DefaultTTL: 20 * time.Millisecond, NoEndpointTTL: 10 * time.Millisecond,
		DefaultBand: flowcontrol.Band{Ordering: flowcontrol.NewEDF("")},
		Bands: map[int]flowcontrol.Band{
			1: {Fairness: flowcontrol.NewRoundRobin(""), MaxRequests: 100},
			2: {Ordering: flowcontrol.NewSLODeadline("")},
		},
		NegativeBand: &flowcontrol.Band{MaxRequests: 50, Fairness: flowcontrol.NewRoundRobin("")},
		UsageLimit:   ceilings{-1: 0.8},
		Saturation:   func(time.Time) float64 { return math.Float64frombits(level.Load()) },
		PoolSize:     func() int { return int(pool.Load()) },
		Poll:         time.Millisecond,
		Observer:     obs,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c, level, pool
}

func TestStress(t *testing.T) {
	t.Parallel()
	check := func(t *testing.T, obs *tally, c *flowcontrol.Controller, calls, admitted int64) {
		t.Helper()
		obs.mu.Lock()
		defer obs.mu.Unlock()
		var finished int64
		for _, n := range obs.outcomes {
			finished += int64(n)
		}
		if finished != calls || int64(obs.outcomes[flowcontrol.Dispatched]) != admitted {
			t.Errorf("%d Admit calls, %d admitted; Observer saw %d finishes: %v", calls, admitted, finished, obs.outcomes)
		}
		for k, v := range obs.last {
			if v != [2]int64{0, 0} {
				t.Errorf("flow %v last reported depth %v; want 0", k, v)
			}
		}
		if n, b := c.Waiting(); n != 0 || b != 0 {
			t.Errorf("Waiting() = %d, %d at the end", n, b)
		}
		t.Logf("%d calls: %v", calls, obs.outcomes)
	}
	t.Run("admit and cancel", func(t *testing.T) {
		t.Parallel()
		obs := newTally()
		c, level, pool := stressController(t, obs)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { c.Start(ctx); close(done) }()
		calls, admitted := stressRun(t, c, level, pool, 700*time.Millisecond, nil)
		check(t, obs, c, calls, admitted)
		cancel()
		<-done
	})
	t.Run("stop while busy", func(t *testing.T) {
		t.Parallel()
		obs := newTally()
		c, level, pool := stressController(t, obs)
		done := make(chan struct{})
		go func() { c.Start(context.Background()); close(done) }()
		calls, admitted := stressRun(t, c, level, pool, 400*time.Millisecond, c.Stop)
		<-done
		check(t, obs, c, calls, admitted)
		if obs.outcomes[flowcontrol.RejectedShuttingDown] == 0 {
			t.Error("no request was refused for shutting down")
		}
	})
}

// nopObserver measures the fast path with an observer installed.
type nopObserver struct{}

func (nopObserver) Finished(flowcontrol.Request, flowcontrol.Outcome, time.Duration) {}
func (nopObserver) Depth(string, int, int, int64)                                    {}

func fastController(tb testing.TB) *flowcontrol.Controller {
	c, err := flowcontrol.New(flowcontrol.Config{
		Saturation: func(time.Time) float64 { return 0.5 },
		PoolSize:   func() int { return 1 },
		UsageLimit: ceilings{},
		Observer:   nopObserver{},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// TestAdmitFastPathAllocs is the fast path's allocation budget: none. It
// is not parallel because AllocsPerRun counts every goroutine's mallocs.
func TestAdmitFastPathAllocs(t *testing.T) {
	c := fastController(t)
	r := flowcontrol.Request{FlowID: "tenant", Priority: 1, Bytes: 100}
	allocs := testing.AllocsPerRun(1000, func() {
		if err := c.Admit(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Errorf("fast path allocates %v objects per call; budget 0", allocs)
	}
}

func BenchmarkAdmitFastPath(b *testing.B) {
	r := flowcontrol.Request{FlowID: "tenant", Priority: 1, Bytes: 100}
	b.Run("serial", func(b *testing.B) {
		c := fastController(b)
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if err := c.Admit(ctx, r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		c := fastController(b)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				if err := c.Admit(ctx, r); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
