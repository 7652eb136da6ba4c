package flowcontrol_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/flowcontrol"
	"github.com/openepp/openepp/pkg/scheduler"
)

// wait bounds every blocking step of a test; reaching it is a failure, so it
// is generous.
const wait = 5 * time.Second

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// meter is a saturation detector the test sets. In credit mode each reading
// returns 0 while credits last, using one up, and level otherwise: it
// stands for a detector that counts dispatched requests, and lets exactly
// as many through as it was given credits.
type meter struct {
	mu      sync.Mutex
	level   float64
	credits int
	calls   int
}

func (m *meter) read(time.Time) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.credits > 0 {
		m.credits--
		return 0
	}
	return m.level
}

func (m *meter) set(level float64) {
	m.mu.Lock()
	m.level = level
	m.mu.Unlock()
}

func (m *meter) grant(n int) {
	m.mu.Lock()
	m.credits += n
	m.mu.Unlock()
}

func (m *meter) readings() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

// ceilings is a usage-limit policy with a ceiling per priority (1 when
// absent).
type ceilings map[int]float64

func (ceilings) TypedName() scheduler.TypedName { return scheduler.TypedName{Type: "test-ceilings"} }
func (c ceilings) Ceiling(p int) float64 {
	if v, ok := c[p]; ok {
		return v
	}
	return 1
}

type finish struct {
	Flow     string
	Priority int
	Outcome  flowcontrol.Outcome
	Waited   time.Duration
}

type depth struct {
	Flow     string
	Priority int
	Requests int
	Bytes    int64
}

// recorder is an Observer that keeps every call.
type recorder struct {
	mu       sync.Mutex
	finishes []finish
	depths   []depth
}

func (r *recorder) Finished(req flowcontrol.Request, o flowcontrol.Outcome, waited time.Duration) {
	r.mu.Lock()
	r.finishes = append(r.finishes, finish{req.FlowID, req.Priority, o, waited})
	r.mu.Unlock()
}

func (r *recorder) Depth(flowID string, priority, requests int, bytes int64) {
	r.mu.Lock()
	r.depths = append(r.depths, depth{flowID, priority, requests, bytes})
	r.mu.Unlock()
}

func (r *recorder) calls() ([]finish, []depth) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]finish(nil), r.finishes...), append([]depth(nil), r.depths...)
}

// harness runs a controller whose saturation, pool size and clock the test
// controls. Poll is an hour unless the test sets it, so the dispatcher runs
// only when the test (or an Admit) wakes it.
type harness struct {
	t     *testing.T
	c     *flowcontrol.Controller
	m     *meter
	clock *fakeClock
	obs   *recorder
	pool  atomic.Int64
	// stopped is closed when Start returns.
	stopped chan struct{}
}

func newHarness(t *testing.T, cfg flowcontrol.Config) *harness {
	t.Helper()
	h := &harness{t: t, m: &meter{level: 1}, clock: newFakeClock(), obs: &recorder{}, stopped: make(chan struct{})}
	h.pool.Store(3)
	if cfg.Saturation == nil {
		cfg.Saturation = h.m.read
	}
	cfg.PoolSize = func() int { return int(h.pool.Load()) }
	if cfg.Now == nil {
		cfg.Now = h.clock.Now
	}
	if cfg.Poll == 0 {
		cfg.Poll = time.Hour
	}
	if cfg.Observer == nil {
		cfg.Observer = h.obs
	}
	c, err := flowcontrol.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		c.Start(ctx)
		close(h.stopped)
	}()
	t.Cleanup(func() {
		c.Stop()
		cancel()
		<-h.stopped
	})
	return h
}

// admit calls Admit in a goroutine; the channel gets its result.
func (h *harness) admit(ctx context.Context, r flowcontrol.Request) <-chan error {
	out := make(chan error, 1)
	go func() { out <- h.c.Admit(ctx, r) }()
	return out
}

// queue admits r and returns once it waits, so that queued requests have
// a known arrival order.
func (h *harness) queue(ctx context.Context, r flowcontrol.Request) <-chan error {
	h.t.Helper()
	before, _ := h.c.Waiting()
	out := h.admit(ctx, r)
	h.eventually("request to be queued", func() bool {
		n, _ := h.c.Waiting()
		return n == before+1
	})
	return out
}

// queueNamed is queue for ordering tests: name (or name:error) is sent on
// results when Admit returns.
func (h *harness) queueNamed(ctx context.Context, name string, r flowcontrol.Request, results chan<- string) {
	h.t.Helper()
	out := h.queue(ctx, r)
	go func() {
		if err := <-out; err != nil {
			results <- name + ":" + err.Error()
			return
		}
		results <- name
	}()
}

// releaseOne lets exactly one request go and returns its name.
func (h *harness) releaseOne(results <-chan string) string {
	h.t.Helper()
	h.m.grant(1)
	h.c.Wake()
	select {
	case name := <-results:
		return name
	case <-time.After(wait):
		h.t.Fatal("no request was dispatched")
		return ""
	}
}

// settle returns after the dispatcher has finished a pass that began
// after settle was called. It relies on held passes reading saturation
// once each, so it needs something waiting that cannot go.
func (h *harness) settle() {
	h.t.Helper()
	for range 2 {
		n := h.m.readings()
		h.c.Wake()
		h.eventually("dispatcher pass", func() bool { return h.m.readings() > n })
	}
}

func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	eventually(h.t, what, cond)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// result waits for an Admit result.
func result(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(wait):
		t.Fatal("Admit did not return")
		return nil
	}
}

// pending fails if ch already has a result.
func pending(t *testing.T, ch <-chan error) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("Admit returned %v; want it still waiting", err)
	default:
	}
}

// refusal unpacks a *flowcontrol.Error.
func refusal(t *testing.T, err error) *flowcontrol.Error {
	t.Helper()
	var fe *flowcontrol.Error
	if !errors.As(err, &fe) {
		t.Fatalf("Admit returned %v (%T); want a *flowcontrol.Error", err, err)
	}
	return fe
}
