package httppoll

import (
	"context"
	"sync/atomic"
	"time"
)

// maxTick is how often at most Tick starts a round, so that a target new
// to a source is polled within it whatever the interval.
const maxTick = 250 * time.Millisecond

// Tick calls round at once and then every interval, or every 250ms when
// the interval is longer, until ctx ends.
func Tick(ctx context.Context, interval time.Duration, round func(now time.Time)) {
	tick := time.NewTicker(min(interval, maxTick))
	defer tick.Stop()
	for {
		round(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Turn is one target's place in a source's schedule: when its next poll
// is due and whether one is running. A source embeds it in the target's
// state; the schedule (next) is the dispatching loop's, busy is shared
// with the target's poll. A new Turn is due at once.
type Turn struct {
	next time.Time
	busy atomic.Bool
}

// Busy reports whether the target's poll is running.
func (t *Turn) Busy() bool { return t.busy.Load() }

// DueNow makes the target due at once (it has something new to poll for).
func (t *Turn) DueNow() { t.next = time.Time{} }

// Slots bounds the polls in flight of a source, each on a goroutine of
// its own, so that a server that hangs delays nobody else.
type Slots chan struct{}

// NewSlots allows n polls at once.
func NewSlots(n int) Slots { return make(Slots, n) }

// Claim reports whether t's poll may start at now: t is idle and due, and
// a slot is free, which it takes. t is then busy until Release and next
// due interval later. A target refused waits for the next round.
func (s Slots) Claim(t *Turn, now time.Time, interval time.Duration) bool {
	if t.busy.Load() || now.Before(t.next) {
		return false
	}
	select {
	case s <- struct{}{}:
	default:
		return false
	}
	t.next = now.Add(interval)
	t.busy.Store(true)
	return true
}

// Release ends t's poll and frees its slot.
func (s Slots) Release(t *Turn) {
	t.busy.Store(false)
	<-s
}

// Forget deletes the targets missing from live whose poll is not running
// (one that is stays until a later round).
func Forget[T interface{ Busy() bool }, V any](targets map[string]T, live map[string]V) {
	for key, t := range targets {
		if _, ok := live[key]; !ok && !t.Busy() {
			delete(targets, key)
		}
	}
}
