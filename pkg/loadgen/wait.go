package loadgen

import (
	"context"
	"time"
)

// waiter sleeps until an instant; each slot has its own.
type waiter interface {
	// wait returns at t, or false when ctx ends first.
	wait(ctx context.Context, t time.Time) bool
	close()
}

// timerWaiter uses a Go timer. Go timers fire up to a millisecond late
// when the process is otherwise idle (the runtime's netpoller sleeps in
// whole milliseconds), so it is only the fallback where no precise timer
// exists.
type timerWaiter struct{}

func (timerWaiter) wait(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (timerWaiter) close() {}
