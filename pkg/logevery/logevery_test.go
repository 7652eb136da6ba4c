package logevery

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestThrottleAdmitsOncePerInterval(t *testing.T) {
	t.Parallel()
	var th Throttle
	t0 := time.Unix(1000, 0)
	if !th.Allow(t0, time.Minute) {
		t.Fatal("the first event was not admitted")
	}
	if th.Allow(t0.Add(59*time.Second), time.Minute) {
		t.Error("an event within the interval was admitted")
	}
	if !th.Allow(t0.Add(time.Minute), time.Minute) {
		t.Error("an event an interval later was not admitted")
	}
	// Concurrent callers at one instant: exactly one is admitted.
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if th.Allow(t0.Add(5*time.Minute), time.Minute) {
				admitted.Add(1)
			}
		}()
	}
	wg.Wait()
	if admitted.Load() != 1 {
		t.Errorf("%d concurrent events admitted, want 1", admitted.Load())
	}
}
