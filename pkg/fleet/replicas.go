package fleet

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
)

// Active-active EPP replicas. A gateway may run several EPP replicas and
// spread its ext_proc streams over them; each replica then routes, and
// records in its approximate prefix index, only its share of the traffic.
// Replication runs Replicas independent routers (each built from the
// policy with its own plugin instances, state and seed) and hands the
// requests to them in turn, in arrival order, as a round-robin proxy does;
// each replica hears the lifecycle of the requests it routed and, with
// flow control, holds only those (queue.go).
//
// With ReplicaSync, every insertion a replica's approx-prefix-cache-producer
// records (pkg/prefix's Publisher) and every dispatch its dispatch-counting
// plugins make (scheduler.DispatchSharer, e.g. queue-scorer's requests
// routed since the last scrape) reaches the others as a live replica-sync
// transport delivers them: batched and sent at the next flush tick (every
// SyncFlush of virtual time, the same ticks for every replica), insertions
// and dispatches of a flush window in one batch, and applied SyncLatency
// later (prefix.Producer.ApplyRemote, DispatchSharer.ApplyDispatches), each
// kind in publication order. They are applied lazily, just before the
// receiving replica's next routing decision: the index and the dispatch
// counts are read only when routing (a count is cut at the endpoint's
// scrape time when read, so it does not matter when it was added) and a
// replica publishes only when it routes (the simulated proxy never falls
// back to another target), so this is exact. Only configs' plugins are
// synced: baselines keep no state to share, and upstream-default's
// re-implemented index and queue handling are never shared, as upstream
// shares nothing.

// Defaults of Replication.
const (
	// DefaultSyncFlush is how often a replica sends its new insertions and
	// dispatches.
	DefaultSyncFlush = 5 * time.Millisecond
	// DefaultSyncLatency is how long a batch takes to reach the others.
	DefaultSyncLatency = time.Millisecond
	// maxReplicas bounds Replicas (flight.replica is a byte).
	maxReplicas = 64
)

// Replication describes the EPP replicas a run's policy runs as.
type Replication struct {
	// Replicas is how many EPP replicas share the traffic; 0 or 1 is one
	// EPP, as without replication.
	Replicas int
	// ReplicaSync shares every replica's prefix-index insertions with the
	// others (a no-op with one replica).
	ReplicaSync bool
	// SyncDispatches also shares the dispatches of the plugins that count
	// them (queue-scorer), as the EPP's --replica-sync-dispatches does.
	SyncDispatches bool
	// SyncFlush is the sync's batching interval (0: DefaultSyncFlush;
	// negative: no batching, each sent at once); SyncLatency is
	// the delivery delay of a batch (0: DefaultSyncLatency; negative: none).
	SyncFlush, SyncLatency time.Duration
}

// withDefaults fills the zero values and clamps the negative ones.
func (r Replication) withDefaults() Replication {
	r.Replicas = max(r.Replicas, 1)
	if r.SyncFlush == 0 {
		r.SyncFlush = DefaultSyncFlush
	}
	if r.SyncLatency == 0 {
		r.SyncLatency = DefaultSyncLatency
	}
	r.SyncFlush, r.SyncLatency = max(r.SyncFlush, 0), max(r.SyncLatency, 0)
	return r
}

func (r Replication) validate() error {
	var errs []error
	if r.Replicas < 0 || r.Replicas > maxReplicas {
		errs = append(errs, fmt.Errorf("replicas: must be in [0, %d], got %d", maxReplicas, r.Replicas))
	}
	if r.SyncFlush > time.Minute || r.SyncLatency > time.Minute {
		errs = append(errs, fmt.Errorf("replica sync: flush %s and latency %s must be at most 1m", r.SyncFlush, r.SyncLatency))
	}
	return errors.Join(errs...)
}

// ReplicationReport is a Replication in a report.
type ReplicationReport struct {
	Replicas int  `json:"replicas"`
	Sync     bool `json:"sync"`
	// Dispatches is a sync of the dispatches too, not only of the
	// prefix-index insertions.
	Dispatches    bool    `json:"dispatches,omitempty"`
	SyncFlushMs   float64 `json:"syncFlushMs,omitempty"`
	SyncLatencyMs float64 `json:"syncLatencyMs,omitempty"`
}

// replicationReport describes r, defaults applied.
func replicationReport(r Replication) ReplicationReport {
	r = r.withDefaults()
	out := ReplicationReport{Replicas: r.Replicas, Sync: r.ReplicaSync && r.Replicas > 1}
	if out.Sync {
		out.SyncFlushMs, out.SyncLatencyMs = ms(r.SyncFlush), ms(r.SyncLatency)
		out.Dispatches = r.SyncDispatches
	}
	return out
}

// label describes r for tables: "3 replicas, no sync", "3 replicas, sync
// every 5 ms + 1 ms", "3 replicas, sync with dispatches every 5 ms + 1 ms".
func (r ReplicationReport) label() string {
	switch {
	case r.Replicas <= 1:
		return "1 replica"
	case !r.Sync:
		return fmt.Sprintf("%d replicas, no sync", r.Replicas)
	}
	when := "at once"
	if r.SyncFlushMs > 0 {
		when = fmt.Sprintf("every %g ms", r.SyncFlushMs)
	}
	what := "sync"
	if r.Dispatches {
		what = "sync with dispatches"
	}
	return fmt.Sprintf("%d replicas, %s %s + %g ms", r.Replicas, what, when, r.SyncLatencyMs)
}

// replicaSeed is replica k's seed: the run's seed for the first, distinct
// derived seeds for the others.
func replicaSeed(seed uint64, k int) uint64 { return seed + uint64(k)*0x9e3779b97f4a7c15 }

// replicated is a router made of one router per EPP replica; a request
// goes to the replica sim.arrive assigned it (flight.replica).
type replicated struct {
	replicas []router
	// sync shares the replicas' prefix insertions and dispatches (nil: no
	// sync).
	sync *syncLog
}

// newReplicated builds rep.Replicas routers with build, one per replica,
// and wires their prefix producers and dispatch sharers to each other when
// rep.ReplicaSync.
func newReplicated(rep Replication, env routerEnv, build func(routerEnv) (router, error)) (*replicated, error) {
	r := &replicated{}
	var synced []syncedPlugins
	for k := range rep.Replicas {
		e := env
		e.seed = replicaSeed(env.seed, k)
		rr, err := build(e)
		if err != nil {
			return nil, fmt.Errorf("replica %d: %w", k, err)
		}
		r.replicas = append(r.replicas, rr)
		var sp syncedPlugins
		if sr, ok := rr.(*schedRouter); ok {
			sp.producers = config.Instances[prefix.Sharer](sr.built)
			if rep.SyncDispatches {
				sp.sharers = config.Instances[scheduler.DispatchSharer](sr.built)
			}
		}
		synced = append(synced, sp)
	}
	if rep.ReplicaSync {
		r.sync = newSyncLog(env.clock, rep, synced)
	}
	return r, nil
}

func (r *replicated) route(f *flight) (int, error) {
	k := int(f.replica)
	if r.sync != nil {
		r.sync.deliver(k)
	}
	return r.replicas[k].route(f)
}

func (r *replicated) firstToken(f *flight) { r.replicas[f.replica].firstToken(f) }

func (r *replicated) complete(f *flight, usage request.Usage, cause scheduler.TerminationCause) {
	r.replicas[f.replica].complete(f, usage, cause)
}

// syncEntry is one insertion or dispatch on its way to the other replicas.
type syncEntry struct {
	due        time.Duration // when the others have it
	from       int           // the replica that recorded it
	isDispatch bool          // disp, else ins
	ins        prefix.Insertion
	disp       scheduler.Dispatch
}

// syncLog is the replicas' sync traffic in virtual time: every insertion
// and dispatch in the order published, which is also the order due (flush
// and latency are the same for all), and how far each replica has applied
// it.
type syncLog struct {
	clock          scheduler.Clock
	flush, latency time.Duration
	entries        []syncEntry
	base           int   // the log position of entries[0]
	applied        []int // per replica, the log position of its next entry
	replicas       []syncedPlugins
	batch          []prefix.Insertion   // scratch
	dispatches     []scheduler.Dispatch // scratch
}

// syncedPlugins are one replica's plugins that replica sync connects.
type syncedPlugins struct {
	producers []prefix.Sharer
	sharers   []scheduler.DispatchSharer
}

// newSyncLog wires every replica's plugins to the log.
func newSyncLog(clock scheduler.Clock, rep Replication, replicas []syncedPlugins) *syncLog {
	l := &syncLog{clock: clock, flush: rep.SyncFlush, latency: rep.SyncLatency,
		applied: make([]int, len(replicas)), replicas: replicas}
	for k, sp := range replicas {
		for _, p := range sp.producers {
			p.SetPublisher(publisherOf{log: l, from: k})
		}
		for _, s := range sp.sharers {
			s.SetDispatchPublisher(publisherOf{log: l, from: k})
		}
	}
	return l
}

// publisherOf is replica from's prefix.Publisher and
// scheduler.DispatchPublisher.
type publisherOf struct {
	log  *syncLog
	from int
}

// Publish implements prefix.Publisher: the insertion leaves at the next
// flush tick after now.
func (p publisherOf) Publish(ins prefix.Insertion) {
	ins.Hashes = slices.Clone(ins.Hashes)
	p.log.entries = append(p.log.entries, syncEntry{due: p.log.due(), from: p.from, ins: ins})
}

// PublishDispatch implements scheduler.DispatchPublisher: the dispatch
// leaves with the insertions of its flush window.
func (p publisherOf) PublishDispatch(d scheduler.Dispatch) {
	p.log.entries = append(p.log.entries, syncEntry{due: p.log.due(), from: p.from, isDispatch: true, disp: d})
}

// now is the virtual time.
func (l *syncLog) now() time.Duration { return l.clock.Now().Sub(epoch) }

// due is when what is published now reaches the others: the next flush
// tick after now, plus the latency.
func (l *syncLog) due() time.Duration {
	at := l.now()
	if l.flush > 0 {
		at = (at/l.flush + 1) * l.flush
	}
	return at + l.latency
}

// deliver applies to replica k every other replica's insertion and
// dispatch due by now: the insertions to its producers and the dispatches
// to its sharers, each in publication order.
func (l *syncLog) deliver(k int) {
	now, at := l.now(), l.applied[k]
	l.batch, l.dispatches = l.batch[:0], l.dispatches[:0]
	for ; at-l.base < len(l.entries) && l.entries[at-l.base].due <= now; at++ {
		switch e := &l.entries[at-l.base]; {
		case e.from == k:
		case e.isDispatch:
			l.dispatches = append(l.dispatches, e.disp)
		default:
			l.batch = append(l.batch, e.ins)
		}
	}
	l.applied[k] = at
	l.apply(k)
	l.trim()
}

// apply hands the gathered batch to replica k's plugins.
func (l *syncLog) apply(k int) {
	if len(l.batch) > 0 {
		for _, p := range l.replicas[k].producers {
			p.ApplyRemote(l.batch)
		}
		clear(l.batch) // let the hashes go with the log
	}
	if len(l.dispatches) > 0 {
		for _, s := range l.replicas[k].sharers {
			s.ApplyDispatches(l.dispatches)
		}
	}
}

// trim drops the entries every replica has passed, once they are many.
func (l *syncLog) trim() {
	done := slices.Min(l.applied) - l.base
	if done < 1024 || 2*done < len(l.entries) {
		return
	}
	n := copy(l.entries, l.entries[done:])
	clear(l.entries[n:])
	l.entries = l.entries[:n]
	l.base += done
}
