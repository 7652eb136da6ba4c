// Package labelbudget caps how many distinct values a metric label takes.
// Label values such as model names and fairness IDs come from clients; without
// a cap, a client sending random ones would grow the series without bound.
// Past the cap every new value is counted as "other", as llm-d does.
package labelbudget

import "sync"

// Other is the label value of everything past the budget.
const Other = "other"

// Budget admits up to max distinct values. Safe for concurrent use; a value
// already admitted costs one read lock.
type Budget struct {
	mu   sync.RWMutex
	max  int
	seen map[string]struct{}
}

// New returns a budget of max distinct values.
func New(max int) *Budget { return &Budget{max: max, seen: map[string]struct{}{}} }

// Value returns v if it is or can still be admitted, else Other.
func (b *Budget) Value(v string) string {
	b.mu.RLock()
	_, known := b.seen[v]
	b.mu.RUnlock()
	if known {
		return v
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, known := b.seen[v]; known {
		return v
	}
	if len(b.seen) >= b.max {
		return Other
	}
	b.seen[v] = struct{}{}
	return v
}
