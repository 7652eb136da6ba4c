package flowcontrol

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/scheduler"
)

// TestForgetsEmptyFlowsAndBands checks that many distinct flow IDs and
// priorities leave nothing behind once their requests are gone.
func TestForgetsEmptyFlowsAndBands(t *testing.T) {
	t.Parallel()
	var open atomic.Bool
	c, err := New(Config{
		Saturation:  func(time.Time) float64 { return map[bool]float64{false: 1, true: 0}[open.Load()] },
		PoolSize:    func() int { return 1 },
		DefaultBand: Band{Fairness: NewRoundRobin("")},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Start(ctx)
	var wg sync.WaitGroup
	const n = 300
	for i := range n {
		wg.Go(func() {
			if err := c.Admit(context.Background(), Request{FlowID: fmt.Sprintf("flow-%d", i), Priority: i % 7}); err != nil {
				t.Error(err)
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for waiting, _ := c.Waiting(); waiting < n; waiting, _ = c.Waiting() {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d requests queued", waiting, n)
		}
		time.Sleep(time.Millisecond)
	}
	c.mu.Lock()
	if len(c.active) != 7 {
		t.Errorf("%d bands while 7 priorities wait", len(c.active))
	}
	c.mu.Unlock()
	open.Store(true)
	c.Wake()
	wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.active) != 0 || c.oldest != nil || c.newest != nil {
		t.Errorf("after all dispatched: %d bands, oldest %v, newest %v", len(c.active), c.oldest, c.newest)
	}
}

// TestRoundRobinForgets simulates a band where a busy flow competes with
// a stream of one-request flows: the chooser's memory stays bounded, and
// the busy flow is never starved: after each of its turns it waits at most
// one turn per other flow then waiting, however fast newcomers arrive.
func TestRoundRobinForgets(t *testing.T) {
	t.Parallel()
	for _, every := range []int{1, 2} {
		t.Run(fmt.Sprintf("a new flow every %d turns", every), func(t *testing.T) {
			t.Parallel()
			ch := NewRoundRobin("").NewChooser().(*roundRobinChooser)
			waiting := []*scheduler.QueuedRequest{{FlowID: "busy"}}
			const turns = 2000
			busyTurns, maxSeen, due := 0, 0, 0
			for i := range turns {
				if i%every == 0 {
					waiting = append(waiting, &scheduler.QueuedRequest{FlowID: fmt.Sprintf("once-%d", i)})
				}
				j := ch.Choose(waiting, defaultOrdering)
				if i > due {
					t.Fatalf("turn %d: busy flow not served since turn %d allowed", i, due)
				}
				if waiting[j].FlowID == "busy" {
					busyTurns++
					due = i + len(waiting)
				} else {
					waiting = append(waiting[:j], waiting[j+1:]...)
				}
				if limit := 2*len(waiting) + roundRobinMargin + 2; len(ch.seen) > limit {
					t.Fatalf("turn %d: chooser remembers %d flows; limit %d", i, len(ch.seen), limit)
				}
				maxSeen = max(maxSeen, len(ch.seen))
			}
			if every == 2 && (busyTurns < turns/2-1 || busyTurns > turns/2+1) {
				t.Errorf("busy flow served %d of %d turns; want half", busyTurns, turns)
			}
			if every == 2 && maxSeen > 2*3+roundRobinMargin+2 {
				t.Errorf("chooser remembered up to %d flows with at most 3 waiting", maxSeen)
			}
		})
	}
}
