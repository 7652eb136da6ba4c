// Package logevery throttles log lines that a failure would otherwise
// repeat on every request: one line per interval tells the operator what
// is wrong, and a metric counts every occurrence.
package logevery

import (
	"sync/atomic"
	"time"
)

// Throttle admits at most one event per interval. The zero value is ready
// and admits the first event; it is safe for concurrent use.
type Throttle struct {
	last atomic.Int64 // unix nanoseconds of the last event admitted
}

// Allow reports whether an event at now may be logged: none was admitted
// within every before it. Of concurrent callers at most one is admitted.
func (t *Throttle) Allow(now time.Time, every time.Duration) bool {
	n := now.UnixNano()
	last := t.last.Load()
	return n-last >= int64(every) && t.last.CompareAndSwap(last, n)
}
