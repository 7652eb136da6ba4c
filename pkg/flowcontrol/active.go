package flowcontrol

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openepp/openepp/pkg/scheduler"
)

// ActiveWindow is how long a priority counts as active after its last
// request, for usage-limit policies whose ceilings depend on the
// priorities in use. A priority whose requests dispatch at once never
// queues, yet it is what the lower bands' holdback keeps room for, so
// "active" means recently seen, not queued.
const ActiveWindow = time.Minute

// refreshEvery bounds how stale the active list may be: a priority that
// went quiet leaves it at the next refresh after ActiveWindow.
const refreshEvery = time.Second

// ActivePriorities tracks when each priority was last seen (the zero value
// is ready). Seeing a known
// priority costs a map read and, at most once per refreshEvery, an atomic
// store, so the request path stays lock-free; a new priority rebuilds the
// list at once.
type ActivePriorities struct {
	seen      sync.Map // int -> *atomic.Int64, last seen (unix nanos)
	list      atomic.Pointer[[]int]
	refreshed atomic.Int64 // unix nanos of the last rebuild
	mu        sync.Mutex   // serialises rebuilds
}

// Touch records a request of priority p at now.
func (a *ActivePriorities) Touch(p int, now time.Time) {
	t := now.UnixNano()
	if v, ok := a.seen.Load(p); ok {
		last := v.(*atomic.Int64)
		if t-last.Load() >= int64(refreshEvery) {
			last.Store(t)
		}
		return
	}
	v := new(atomic.Int64)
	v.Store(t)
	if _, loaded := a.seen.LoadOrStore(p, v); !loaded {
		a.rebuild(now)
	}
}

// At returns the active priorities, highest first, with p among them (a
// request being judged is active whatever the window says).
func (a *ActivePriorities) At(p int, now time.Time) []int {
	if now.UnixNano()-a.refreshed.Load() >= int64(refreshEvery) {
		a.rebuild(now)
	}
	list := a.list.Load()
	if list == nil {
		return []int{p}
	}
	if _, found := slices.BinarySearchFunc(*list, p, descending); found {
		return *list
	}
	out := append(slices.Clone(*list), p)
	slices.SortFunc(out, descending)
	return out
}

// rebuild lists the priorities seen within ActiveWindow of now and forgets
// the others.
func (a *ActivePriorities) rebuild(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var list []int
	a.seen.Range(func(k, v any) bool {
		if now.UnixNano()-v.(*atomic.Int64).Load() < int64(ActiveWindow) {
			list = append(list, k.(int))
		} else {
			a.seen.Delete(k)
		}
		return true
	})
	slices.SortFunc(list, descending)
	a.list.Store(&list)
	a.refreshed.Store(now.UnixNano())
}

func descending(a, b int) int { return cmp.Compare(b, a) }

// below reports whether the pool is below the ceiling for priority p now.
func (c *Controller) below(p int) bool {
	ok, _, _ := c.belowAt(p)
	return ok
}

// belowAt is below with the saturation read and when.
func (c *Controller) belowAt(p int) (ok bool, saturation float64, now time.Time) {
	cfg := c.conf()
	now = c.now()
	saturation = cfg.Saturation(now)
	return saturation < c.ceiling(cfg, p, saturation, now), saturation, now // false for NaN: hold
}

// Blocked is a dispatcher pass stopped because the top band may not go
// (head-of-line blocking): the saturation read and every band with waiting
// requests. Ceiling gives a band's ceiling at that saturation, computed when
// asked (a banded policy's state may move with each question, and most
// passes ask none).
type Blocked struct {
	Now        time.Time
	Saturation float64
	Bands      []int // priorities with waiting requests, highest first
	Ceiling    func(priority int) float64
}

// blocked tells OnBlocked, when set, which bands wait at this saturation.
// It runs on the dispatcher only (c.block is its scratch).
func (c *Controller) blocked(saturation float64, now time.Time) {
	cfg := c.conf()
	if cfg.OnBlocked == nil {
		return
	}
	b := &c.block
	b.Now, b.Saturation, b.Bands = now, saturation, b.Bands[:0]
	c.mu.Lock()
	for _, band := range c.active {
		b.Bands = append(b.Bands, band.priority)
	}
	c.mu.Unlock()
	if b.Ceiling == nil {
		b.Ceiling = c.blockedCeiling
	}
	cfg.OnBlocked(b)
}

// blockedCeiling is Blocked.Ceiling: priority's ceiling at the blocked
// pass's saturation, under the configuration in force.
func (c *Controller) blockedCeiling(priority int) float64 {
	return c.ceiling(c.conf(), priority, c.block.Saturation, c.block.Now)
}

// ceiling is priority p's ceiling under cfg's usage-limit policy.
func (c *Controller) ceiling(cfg *Config, p int, saturation float64, now time.Time) float64 {
	switch u := cfg.UsageLimit.(type) {
	case nil:
		return 1
	case scheduler.BandedUsageLimitPolicy:
		return u.CeilingAmong(p, saturation, c.prios.At(p, now))
	default:
		return u.Ceiling(p)
	}
}
