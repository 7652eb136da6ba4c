package replicasync

import (
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/openepp/openepp/pkg/scheduler"
)

// Bounds of a received dispatch's time, which comes from the sender's
// clock: replicas' clocks are assumed to agree within a few milliseconds
// (NTP, as in any cluster), so a dispatch is never much ahead of the
// receiver's clock and arrives a flush interval or so after it was made.
const (
	// maxDispatchLead is how far ahead of this replica's clock a dispatch
	// may be and still keep its time; one further ahead is counted as
	// made now (and in openepp_replica_sync_clamped_dispatches_total). A
	// plugin would otherwise count a dispatch from a fast clock through
	// scrapes that already show it, and a queue-scorer, which takes the
	// newest dispatch it saw as its notion of now, would forget its other
	// notes too early. 250ms is five default scrape intervals: far more
	// than NTP lets clocks drift, and little overcounting when it is kept.
	maxDispatchLead = 250 * time.Millisecond
	// maxDispatchAge is how old by this replica's clock a dispatch may be;
	// an older one is dropped (and counted in
	// openepp_replica_sync_stale_dispatches_total): every endpoint scraped
	// since shows it, and the queue-scorer forgets notes at this age even
	// without a scrape.
	maxDispatchAge = 10 * time.Second
)

// dispatchStats count received dispatches: for State, and per batch.
// Received = Applied + Stale + NoPlugin; Clamped ones are applied too.
type dispatchStats struct {
	Received uint64 `json:"received"`
	Applied  uint64 `json:"applied"`
	Stale    uint64 `json:"stale"`
	Clamped  uint64 `json:"clamped"`
	NoPlugin uint64 `json:"noPlugin"`
}

// dispatchTotals are the receiving side's dispatch totals, for State.
type dispatchTotals struct {
	received, applied, stale, clamped, noPlugin atomic.Uint64
}

func (t *dispatchTotals) add(s dispatchStats) {
	t.received.Add(s.Received)
	t.applied.Add(s.Applied)
	t.stale.Add(s.Stale)
	t.clamped.Add(s.Clamped)
	t.noPlugin.Add(s.NoPlugin)
}

func (t *dispatchTotals) load() dispatchStats {
	return dispatchStats{
		Received: t.received.Load(), Applied: t.applied.Load(), Stale: t.stale.Load(),
		Clamped: t.clamped.Load(), NoPlugin: t.noPlugin.Load(),
	}
}

var _ scheduler.DispatchPublisher = (*Node)(nil)

// PublishDispatch implements scheduler.DispatchPublisher: it appends d to
// the pending batch, beside the insertions, and never waits on the
// network nor allocates once the buffers have grown. Without peers it does
// nothing, nor for a dispatch without an endpoint or a time; past the
// pending limit it drops d, counted for every peer at the next flush.
func (n *Node) PublishDispatch(d scheduler.Dispatch) {
	if d.HostPort == "" || d.At.IsZero() || !n.hasPeers.Load() {
		return
	}
	if p := n.lockPending(dispatchBound(d), &n.pendingDropped.disp); p != nil {
		p.addDispatch(d)
		n.unlockPending(p)
	}
}

// SetDispatchSharers sets where received dispatches go: lookup finds the
// plugin of a dispatch's Plugin name; nil (or a nil answer) drops them,
// counted. Each batch's dispatches reach a plugin in one ApplyDispatches
// call, in the order they were published, the slice valid only during the
// call. It does not set the plugins' publishers: call SetDispatchPublisher
// on each sharer with this node. Call it again after every config reload.
func (n *Node) SetDispatchSharers(lookup func(name string) scheduler.DispatchSharer) {
	if lookup == nil {
		n.sharers.Store(nil)
		return
	}
	n.sharers.Store(&lookup)
}

// sharerLookup returns the lookup set by SetDispatchSharers, or nil.
func (n *Node) sharerLookup() func(string) scheduler.DispatchSharer {
	if l := n.sharers.Load(); l != nil {
		return *l
	}
	return nil
}

// applyDispatches hands a received batch's dispatches to their plugins
// and counts them. It reorders and rewrites ds.
func (n *Node) applyDispatches(ds []scheduler.Dispatch) {
	if len(ds) == 0 {
		return
	}
	kept, clamped := admitDispatches(ds, n.opts.Clock.Now())
	applied, none := applySharers(n.sharerLookup(), kept)
	s := dispatchStats{
		Received: uint64(len(ds)), Applied: uint64(applied), Stale: uint64(len(ds) - len(kept)),
		Clamped: uint64(clamped), NoPlugin: uint64(none),
	}
	n.recv.disp.add(s)
	n.m.receivedDispatches(s)
}

// admitDispatches checks the dispatches' times against now, in place: it
// drops those more than maxDispatchAge old, sets those more than
// maxDispatchLead ahead to now, and returns the rest and how many it set.
func admitDispatches(ds []scheduler.Dispatch, now time.Time) (kept []scheduler.Dispatch, clamped int) {
	oldest, latest := now.Add(-maxDispatchAge), now.Add(maxDispatchLead)
	kept = ds[:0]
	for _, d := range ds {
		switch {
		case d.At.Before(oldest):
			continue
		case d.At.After(latest):
			d.At = now
			clamped++
		}
		kept = append(kept, d)
	}
	return kept, clamped
}

// applySharers hands the dispatches to their plugins, one call per plugin
// name, keeping their order within a plugin. It returns how many were
// applied and how many named no plugin (lookup nil, or answering nil).
func applySharers(lookup func(string) scheduler.DispatchSharer, ds []scheduler.Dispatch) (applied, none int) {
	if !slices.IsSortedFunc(ds, byPlugin) {
		slices.SortStableFunc(ds, byPlugin)
	}
	for i := 0; i < len(ds); {
		j := i + 1
		for j < len(ds) && ds[j].Plugin == ds[i].Plugin {
			j++
		}
		var s scheduler.DispatchSharer
		if lookup != nil {
			s = lookup(ds[i].Plugin)
		}
		if s == nil {
			none += j - i
		} else {
			s.ApplyDispatches(ds[i:j:j])
			applied += j - i
		}
		i = j
	}
	return applied, none
}

func byPlugin(a, b scheduler.Dispatch) int { return strings.Compare(a.Plugin, b.Plugin) }
