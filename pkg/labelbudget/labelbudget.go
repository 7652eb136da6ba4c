// Package labelbudget caps how many distinct values a metric label takes.
// Label values such as model names and fairness IDs come from clients; without
// a cap, a client sending random ones would grow the series without bound.
// Past the cap every new value is counted as "other", as llm-d does; a
// forgetting budget first makes room by dropping values nobody has used for
// a while, for labels whose values come and go (one fairness ID per coding
// agent session), so the cap bounds the live series rather than every value
// ever seen.
package labelbudget

import (
	"sync"
	"sync/atomic"
	"time"
)

// Other is the label value of everything past the budget.
const Other = "other"

// Budget admits up to max distinct values. Safe for concurrent use; a value
// already admitted costs one read lock.
type Budget struct {
	mu   sync.RWMutex
	max  int
	seen map[string]*atomic.Int64 // value -> last use, Unix nanoseconds

	idle   time.Duration    // 0: never forget
	forget func(v string)   // told of each forgotten value
	now    func() time.Time // the clock; tests replace it
}

// New returns a budget of max distinct values that never forgets one.
func New(max int) *Budget {
	return &Budget{max: max, seen: map[string]*atomic.Int64{}, now: time.Now}
}

// NewForgetting returns a budget of max distinct values that, when full,
// forgets the values unused for idle or longer to admit a new one, calling
// forget(v) for each (outside its lock) so that the owner deletes v's
// series; a new value is Other only while no value is that idle. A series
// whose value is forgotten restarts from zero if the value comes back,
// which rate() reads as a counter reset.
func NewForgetting(max int, idle time.Duration, forget func(v string)) *Budget {
	b := New(max)
	b.idle, b.forget = idle, forget
	return b
}

// Value returns v if it is or can still be admitted, else Other.
func (b *Budget) Value(v string) string {
	b.mu.RLock()
	last, known := b.seen[v]
	if known && b.idle > 0 {
		// Under the read lock, so a sweep cannot forget v in between.
		last.Store(b.now().UnixNano())
	}
	b.mu.RUnlock()
	if known {
		return v
	}
	v, forgotten := b.admit(v)
	for _, f := range forgotten {
		b.forget(f)
	}
	return v
}

// admit adds v if there is or can be made room, returning what it forgot.
func (b *Budget) admit(v string) (string, []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, known := b.seen[v]; known {
		return v, nil
	}
	var forgotten []string
	now := b.now().UnixNano()
	if len(b.seen) >= b.max && b.idle > 0 {
		// Forget every idle value at once: a sweep costs O(max), and the
		// values it frees serve the next arrivals without another.
		cutoff := now - b.idle.Nanoseconds()
		for s, last := range b.seen {
			if last.Load() <= cutoff {
				delete(b.seen, s)
				forgotten = append(forgotten, s)
			}
		}
	}
	if len(b.seen) >= b.max {
		return Other, forgotten
	}
	last := &atomic.Int64{}
	last.Store(now)
	b.seen[v] = last
	return v, forgotten
}
