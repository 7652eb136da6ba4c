package flowcontrol

import (
	"cmp"
	"slices"
	"strings"
)

// stateListLimit bounds the flows listed per band in a State, so a snapshot
// costs about the same however many tenants wait.
const stateListLimit = 100

// State is what waits in a Controller at one instant, for an operator (the
// EPP serves it at /debug/flowcontrol). JSON fields: requests and bytes
// waiting over all bands; maxRequests and maxBytes, the global limits (0:
// none); saturation, the detector's rating now (>= the band's ceiling:
// that band waits); oldestWaitSeconds, how long the longest waiter has
// waited; bands, the bands with waiters, highest priority first.
type State struct {
	Requests          int64       `json:"requests"`
	Bytes             int64       `json:"bytes"`
	MaxRequests       int64       `json:"maxRequests"`
	MaxBytes          int64       `json:"maxBytes"`
	Saturation        float64     `json:"saturation"`
	OldestWaitSeconds float64     `json:"oldestWaitSeconds"`
	Bands             []BandState `json:"bands"`
}

// BandState is one priority band: its waiters, its saturation ceiling and
// limits, and its flows with the most waiters first (at most 100;
// moreFlows counts the rest).
type BandState struct {
	Priority    int         `json:"priority"`
	Requests    int64       `json:"requests"`
	Bytes       int64       `json:"bytes"`
	Ceiling     float64     `json:"ceiling"`
	MaxRequests int64       `json:"maxRequests"`
	MaxBytes    int64       `json:"maxBytes"`
	Flows       []FlowState `json:"flows"`
	MoreFlows   int         `json:"moreFlows"`
}

// FlowState is one flow's queue in a band.
type FlowState struct {
	ID                string  `json:"id"`
	Requests          int     `json:"requests"`
	Bytes             int64   `json:"bytes"`
	OldestWaitSeconds float64 `json:"oldestWaitSeconds"`
}

// State snapshots the queues. It holds the lock only to copy them.
func (c *Controller) State() State {
	cfg := c.conf()
	now := c.now()
	st := State{MaxRequests: cfg.MaxRequests, MaxBytes: cfg.MaxBytes, Saturation: cfg.Saturation(now)}
	c.mu.Lock()
	st.Requests, st.Bytes = c.requests, c.bytes
	if c.oldest != nil {
		st.OldestWaitSeconds = now.Sub(c.oldest.q.Enqueued).Seconds()
	}
	for _, b := range c.active {
		bs := BandState{Priority: b.priority, Requests: b.requests, Bytes: b.bytes,
			MaxRequests: b.limits.MaxRequests, MaxBytes: b.limits.MaxBytes, Flows: make([]FlowState, 0, len(b.flows))}
		for _, f := range b.flows {
			fs := FlowState{ID: f.id, Requests: len(f.items), Bytes: f.bytes}
			for _, it := range f.items {
				fs.OldestWaitSeconds = max(fs.OldestWaitSeconds, now.Sub(it.q.Enqueued).Seconds())
			}
			bs.Flows = append(bs.Flows, fs)
		}
		st.Bands = append(st.Bands, bs)
	}
	c.mu.Unlock()
	for i := range st.Bands {
		b := &st.Bands[i]
		b.Ceiling = c.ceiling(cfg, b.Priority, st.Saturation, now)
		slices.SortFunc(b.Flows, func(x, y FlowState) int {
			return cmp.Or(cmp.Compare(y.Requests, x.Requests), strings.Compare(x.ID, y.ID))
		})
		if len(b.Flows) > stateListLimit {
			b.Flows, b.MoreFlows = b.Flows[:stateListLimit], len(b.Flows)-stateListLimit
		}
	}
	return st
}

// BandUsage is every band's occupancy against its limits, highest priority
// first: the bands the config names, with or without waiters, and any
// other band with waiters. Flows are not listed. It holds the lock only to
// count.
func (c *Controller) BandUsage() []BandState {
	cfg := c.conf()
	c.mu.Lock()
	byPriority := make(map[int]*BandState, len(cfg.Bands)+len(c.active))
	for _, b := range c.active {
		byPriority[b.priority] = &BandState{Priority: b.priority, Requests: b.requests, Bytes: b.bytes}
	}
	c.mu.Unlock()
	for p := range cfg.Bands {
		if byPriority[p] == nil {
			byPriority[p] = &BandState{Priority: p}
		}
	}
	out := make([]BandState, 0, len(byPriority))
	for p, b := range byPriority {
		limits := c.template(p)
		b.MaxRequests, b.MaxBytes, b.Ceiling = limits.MaxRequests, limits.MaxBytes, 1
		if cfg.UsageLimit != nil {
			b.Ceiling = cfg.UsageLimit.Ceiling(p)
		}
		out = append(out, *b)
	}
	slices.SortFunc(out, func(x, y BandState) int { return cmp.Compare(y.Priority, x.Priority) })
	return out
}

// Limits are the global limits in force (0: none).
func (c *Controller) Limits() (maxRequests, maxBytes int64) {
	cfg := c.conf()
	return cfg.MaxRequests, cfg.MaxBytes
}
