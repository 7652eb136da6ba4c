package flowcontrol_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/flowcontrol"
	"github.com/openepp/openepp/pkg/scheduler"
)

var bg = context.Background()

func TestNewValidates(t *testing.T) {
	t.Parallel()
	sat := func(time.Time) float64 { return 0 }
	size := func() int { return 1 }
	tests := []struct {
		name string
		cfg  flowcontrol.Config
		want []string // substrings of the error; none means valid
	}{
		{name: "valid", cfg: flowcontrol.Config{Saturation: sat, PoolSize: size}},
		{name: "functions required", cfg: flowcontrol.Config{},
			want: []string{"saturation: required", "poolSize: required"}},
		{name: "negative limits and durations", cfg: flowcontrol.Config{
			Saturation: sat, PoolSize: size,
			MaxRequests: -1, MaxBytes: -2, DefaultTTL: -1, NoEndpointTTL: -1, Poll: -1,
			DefaultBand:  flowcontrol.Band{MaxBytes: -3},
			NegativeBand: &flowcontrol.Band{MaxRequests: -4},
			Bands:        map[int]flowcontrol.Band{2: {MaxRequests: -5}, -7: {MaxBytes: -6}},
		}, want: []string{
			"maxRequests: must be >= 0, got -1", "maxBytes: must be >= 0, got -2", "defaultTTL: must be >= 0",
			"noEndpointTTL: must be >= 0", "poll: must be >= 0", "defaultBand.maxBytes: must be >= 0, got -3",
			"negativeBand.maxRequests: must be >= 0, got -4", "bands[2].maxRequests: must be >= 0, got -5",
			"bands[-7].maxBytes: must be >= 0, got -6",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := flowcontrol.New(tc.cfg)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("New accepted an invalid config")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestFastPath(t *testing.T) {
	t.Parallel()
	h := newHarness(t, flowcontrol.Config{UsageLimit: ceilings{5: 0.4}})
	h.m.set(0.5)
	if err := h.c.Admit(bg, flowcontrol.Request{Bytes: 10}); err != nil {
		t.Fatalf("Admit below the ceiling with nothing waiting: %v", err)
	}
	finishes, depths := h.obs.calls()
	if diff := cmp.Diff([]finish{{flowcontrol.DefaultFlowID, 0, flowcontrol.Dispatched, 0}}, finishes); diff != "" {
		t.Errorf("Finished calls (-want +got):\n%s", diff)
	}
	if len(depths) != 0 {
		t.Errorf("fast path touched a queue: %v", depths)
	}
	// That the fast path is closed while anything waits, even below the
	// ceiling, is TestStrictPriority's "held top band holds lower bands".
}

func TestQueueUntilWake(t *testing.T) {
	t.Parallel()
	h := newHarness(t, flowcontrol.Config{})
	ch := h.queue(bg, flowcontrol.Request{FlowID: "f"})
	h.settle()
	pending(t, ch)
	h.clock.Advance(3 * time.Second)
	h.m.set(0.5)
	h.c.Wake() // Poll is an hour: only Wake can release it
	if err := result(t, ch); err != nil {
		t.Fatal(err)
	}
	if n, b := h.c.Waiting(); n != 0 || b != 0 {
		t.Errorf("Waiting() = %d, %d after dispatch", n, b)
	}
	finishes, _ := h.obs.calls()
	if diff := cmp.Diff([]finish{{"f", 0, flowcontrol.Dispatched, 3 * time.Second}}, finishes); diff != "" {
		t.Errorf("Finished calls (-want +got):\n%s", diff)
	}
}

func TestStrictPriority(t *testing.T) {
	t.Parallel()
	t.Run("higher band first", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, flowcontrol.Config{})
		results := make(chan string, 10)
		for _, r := range []struct {
			name string
			prio int
		}{{"low", -1}, {"mid1", 0}, {"high1", 5}, {"mid2", 0}, {"high2", 5}} {
			h.queueNamed(bg, r.name, flowcontrol.Request{Priority: r.prio}, results)
		}
		var got []string
		for range 5 {
			got = append(got, h.releaseOne(results))
		}
		if diff := cmp.Diff([]string{"high1", "high2", "mid1", "mid2", "low"}, got); diff != "" {
			t.Errorf("dispatch order (-want +got):\n%s", diff)
		}
	})
	t.Run("held top band holds lower bands", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, flowcontrol.Config{UsageLimit: ceilings{5: 0.5}})
		h.m.set(0.7) // over band 5's ceiling, under band 0's
		high := h.queue(bg, flowcontrol.Request{Priority: 5})
		// Below its own ceiling, but something waits: no fast path.
		low := h.queue(bg, flowcontrol.Request{Priority: 0})
		h.settle()
		pending(t, high)
		pending(t, low)
		h.m.set(0.3)
		h.c.Wake()
		for _, ch := range []<-chan error{high, low} {
			if err := result(t, ch); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestFairness(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		fairness scheduler.FairnessPolicy
		queued   []string // flow/label pairs: "a1" is flow a
		want     []string
	}{
		{name: "global strict is one queue", fairness: nil,
			queued: []string{"a1", "a2", "a3", "b1", "b2", "b3"}, want: []string{"a1", "a2", "a3", "b1", "b2", "b3"}},
		{name: "round robin alternates", fairness: flowcontrol.NewRoundRobin(""),
			queued: []string{"a1", "a2", "a3", "b1", "b2", "b3"}, want: []string{"a1", "b1", "a2", "b2", "a3", "b3"}},
		{name: "round robin skips emptied flows", fairness: flowcontrol.NewRoundRobin(""),
			queued: []string{"a1", "a2", "b1", "c1", "c2"}, want: []string{"a1", "b1", "c1", "a2", "c2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, flowcontrol.Config{DefaultBand: flowcontrol.Band{Fairness: tc.fairness}})
			results := make(chan string, len(tc.queued))
			for _, name := range tc.queued {
				h.queueNamed(bg, name, flowcontrol.Request{FlowID: name[:1]}, results)
			}
			var got []string
			for range tc.queued {
				got = append(got, h.releaseOne(results))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("dispatch order (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOrdering(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		ordering scheduler.OrderingPolicy
		want     []string
	}{
		{name: "fcfs", ordering: nil, want: []string{"none", "both", "deadline", "slo"}},
		{name: "edf", ordering: flowcontrol.NewEDF(""), want: []string{"deadline", "both", "none", "slo"}},
		{name: "slo deadline", ordering: flowcontrol.NewSLODeadline(""), want: []string{"slo", "both", "none", "deadline"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, flowcontrol.Config{DefaultBand: flowcontrol.Band{Ordering: tc.ordering}})
			now := h.clock.Now()
			ctxIn := func(d time.Duration) context.Context {
				ctx, cancel := context.WithDeadline(bg, now.Add(d))
				t.Cleanup(cancel)
				return ctx
			}
			results := make(chan string, 4)
			h.queueNamed(bg, "none", flowcontrol.Request{}, results)
			h.queueNamed(ctxIn(3*time.Hour), "both", flowcontrol.Request{SLODeadline: now.Add(2 * time.Minute)}, results)
			h.queueNamed(ctxIn(time.Hour), "deadline", flowcontrol.Request{}, results)
			h.queueNamed(bg, "slo", flowcontrol.Request{SLODeadline: now.Add(time.Minute)}, results)
			var got []string
			for range 4 {
				got = append(got, h.releaseOne(results))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("dispatch order (-want +got):\n%s", diff)
			}
		})
	}
}

// headsSeen is a fairness policy that records the heads it is shown.
type headsSeen struct{ heads chan scheduler.QueuedRequest }

func (headsSeen) TypedName() scheduler.TypedName      { return scheduler.TypedName{Type: "test-heads"} }
func (s headsSeen) NewChooser() scheduler.FlowChooser { return s }
func (s headsSeen) Choose(heads []*scheduler.QueuedRequest, _ scheduler.OrderingPolicy) int {
	s.heads <- *heads[0]
	return 0
}

func TestQueuedRequestFields(t *testing.T) {
	t.Parallel()
	seen := headsSeen{heads: make(chan scheduler.QueuedRequest, 2)}
	h := newHarness(t, flowcontrol.Config{DefaultTTL: 2 * time.Hour, DefaultBand: flowcontrol.Band{Fairness: seen}})
	now := h.clock.Now()
	soon, cancel := context.WithDeadline(bg, now.Add(time.Hour))
	defer cancel()
	late, cancel2 := context.WithDeadline(bg, now.Add(3*time.Hour))
	defer cancel2()
	slo := now.Add(time.Minute)
	first := h.queue(soon, flowcontrol.Request{FlowID: "f", Priority: 3, Bytes: 42, SLODeadline: slo})
	h.clock.Advance(time.Second)
	second := h.queue(late, flowcontrol.Request{FlowID: "g", Priority: 3})
	h.m.grant(2)
	h.c.Wake()
	result(t, first)
	result(t, second)
	got := []scheduler.QueuedRequest{<-seen.heads, <-seen.heads}
	want := []scheduler.QueuedRequest{
		{FlowID: "f", Priority: 3, Bytes: 42, Enqueued: now, Deadline: now.Add(time.Hour), SLODeadline: slo, Seq: 1},
		{FlowID: "g", Priority: 3, Enqueued: now.Add(time.Second), Deadline: now.Add(time.Second + 2*time.Hour), Seq: 2},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("queued requests (-want +got):\n%s", diff)
	}
}

func TestCapacity(t *testing.T) {
	t.Parallel()
	req := func(prio int, bytes int64) flowcontrol.Request {
		return flowcontrol.Request{FlowID: "f", Priority: prio, Bytes: bytes}
	}
	tests := []struct {
		name    string
		cfg     flowcontrol.Config
		queued  []flowcontrol.Request
		refused flowcontrol.Request
		want    string
	}{
		{name: "global requests", cfg: flowcontrol.Config{MaxRequests: 2},
			queued: []flowcontrol.Request{req(0, 1), req(3, 1)}, refused: req(1, 1),
			want: `flow control: the queue (all bands) is full (2 requests queued, maxRequests 2); request of flow "f" (priority 1) refused`},
		{name: "global bytes", cfg: flowcontrol.Config{MaxBytes: 100},
			queued: []flowcontrol.Request{req(0, 60)}, refused: req(2, 50),
			want: `flow control: the queue (all bands) is full (60 bytes queued plus 50 in this request would exceed maxBytes 100); request of flow "f" (priority 2) refused`},
		{name: "band requests", cfg: flowcontrol.Config{Bands: map[int]flowcontrol.Band{1: {MaxRequests: 1}}},
			queued: []flowcontrol.Request{req(1, 1), req(0, 1), req(0, 1)}, refused: req(1, 1),
			want: `flow control: band 1 is full (1 requests queued, maxRequests 1); request of flow "f" (priority 1) refused`},
		{name: "band bytes, even when empty", cfg: flowcontrol.Config{DefaultBand: flowcontrol.Band{MaxBytes: 10}},
			queued: []flowcontrol.Request{req(1, 5)}, refused: req(0, 11),
			want: `flow control: band 0 is full (0 bytes queued plus 11 in this request would exceed maxBytes 10); request of flow "f" (priority 0) refused`},
		{name: "negative band template", cfg: flowcontrol.Config{NegativeBand: &flowcontrol.Band{MaxRequests: 1}},
			queued: []flowcontrol.Request{req(-1, 1), req(-2, 1), req(0, 1), req(0, 1)}, refused: req(-1, 1),
			want: `flow control: band -1 is full (1 requests queued, maxRequests 1); request of flow "f" (priority -1) refused`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, tc.cfg)
			var waiting []<-chan error
			for _, r := range tc.queued {
				waiting = append(waiting, h.queue(bg, r))
			}
			beforeN, beforeB := h.c.Waiting()
			err := h.c.Admit(bg, tc.refused)
			fe := refusal(t, err)
			if fe.Outcome != flowcontrol.RejectedCapacity || fe.NoEndpoints {
				t.Errorf("refusal = %v, NoEndpoints %v; want RejectedCapacity with endpoints", fe.Outcome, fe.NoEndpoints)
			}
			if diff := cmp.Diff(tc.want, err.Error()); diff != "" {
				t.Errorf("message (-want +got):\n%s", diff)
			}
			if n, b := h.c.Waiting(); n != beforeN || b != beforeB {
				t.Errorf("Waiting() = %d, %d after a refusal; want %d, %d", n, b, beforeN, beforeB)
			}
			for _, ch := range waiting {
				pending(t, ch)
			}
			finishes, _ := h.obs.calls()
			want := finish{"f", tc.refused.Priority, flowcontrol.RejectedCapacity, 0}
			if diff := cmp.Diff([]finish{want}, finishes); diff != "" {
				t.Errorf("Finished calls (-want +got):\n%s", diff)
			}
		})
	}
}

// TestOnBlockedSeesEveryWaitingBand: a pass stopped by the top band's
// ceiling reports the saturation and every band with waiting requests,
// highest first, and gives each band's ceiling when asked (in-flight
// eviction decides from this).
func TestOnBlockedSeesEveryWaitingBand(t *testing.T) {
	type call struct {
		saturation float64
		bands      []int
		ceilings   []float64
	}
	calls := make(chan call, 16)
	h := newHarness(t, flowcontrol.Config{
		UsageLimit: ceilings{5: 0.9, -1: 0.5},
		OnBlocked: func(b *flowcontrol.Blocked) {
			c := call{saturation: b.Saturation, bands: append([]int(nil), b.Bands...)}
			for _, p := range b.Bands {
				c.ceilings = append(c.ceilings, b.Ceiling(p))
			}
			calls <- c
		},
	})
	h.m.set(1.2)
	h.queue(context.Background(), flowcontrol.Request{Priority: -1})
	h.queue(context.Background(), flowcontrol.Request{Priority: 5})
	h.c.Wake()
	deadline := time.After(wait)
	for {
		select {
		case c := <-calls:
			if len(c.bands) == 2 {
				if c.saturation != 1.2 || c.bands[0] != 5 || c.bands[1] != -1 || c.ceilings[0] != 0.9 || c.ceilings[1] != 0.5 {
					t.Fatalf("OnBlocked saw %+v, want saturation 1.2, bands [5 -1] with ceilings [0.9 0.5]", c)
				}
				return
			}
		case <-deadline:
			t.Fatal("OnBlocked never saw both bands")
		}
	}
}

// TestCapacityWithoutEndpoints: full queues in front of a pool with no
// endpoints refuse as RejectedNoEndpoints (llm-d's outcome, a 503): the
// pool is unavailable, not busy.
func TestCapacityWithoutEndpoints(t *testing.T) {
	t.Parallel()
	h := newHarness(t, flowcontrol.Config{MaxRequests: 1})
	h.pool.Store(0)
	waiting := h.queue(bg, flowcontrol.Request{FlowID: "f", Priority: 0})
	err := h.c.Admit(bg, flowcontrol.Request{FlowID: "f", Priority: 1})
	fe := refusal(t, err)
	if fe.Outcome != flowcontrol.RejectedNoEndpoints || !fe.NoEndpoints {
		t.Errorf("refusal = %v, NoEndpoints %v; want RejectedNoEndpoints", fe.Outcome, fe.NoEndpoints)
	}
	if want := "while the pool has no endpoints"; !strings.Contains(err.Error(), want) {
		t.Errorf("message %q does not say %q", err, want)
	}
	pending(t, waiting)
	finishes, _ := h.obs.calls()
	if diff := cmp.Diff([]finish{{"f", 1, flowcontrol.RejectedNoEndpoints, 0}}, finishes); diff != "" {
		t.Errorf("Finished calls (-want +got):\n%s", diff)
	}
}
