package inflight

import (
	"sort"
	"sync"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
)

// Bounds of a DispatchLog. A dispatch older than maxDispatchAge is assumed
// to be in any metrics the endpoint reports (or the endpoint is stale and
// other safeguards apply), and an endpoint keeps at most twice
// maxPendingDispatches notes (trimmed to maxPendingDispatches once it has
// that many, so that the trim's copy is paid once per maxPendingDispatches
// dispatches), so an endpoint that is never scraped cannot grow the log.
const (
	maxDispatchAge       = 10 * time.Second
	maxPendingDispatches = 4096
	dispatchSweepEvery   = 4096
)

// DispatchLog remembers when requests were routed to each endpoint, until
// a scrape of that endpoint (Metrics.UpdateTime) is newer than them, so a
// plugin can add the requests its metrics cannot show yet (queue-scorer to
// its queues, utilization-detector to its rating). Safe for concurrent use.
type DispatchLog struct {
	mu sync.Mutex
	// byEP is keyed by Endpoint.HostPortHash: AddUnscraped looks up every
	// candidate of every decision, and an integer key costs a fraction of
	// hashing and comparing the address.
	byEP map[uint64]*dispatchNotes
	// keys changes whenever byEP gains or loses a key; an endpoint whose
	// notes are all scraped keeps its (empty) entry until the sweep, so
	// that under steady traffic the keys, and index, stay put.
	keys  uint64
	index dispatchIndex
	adds  int
	newer time.Time // latest dispatch seen, the sweep's notion of now
}

// dispatchIndex is byEP looked up for the candidates of the last
// AddUnscraped, in their order. The next call with the same candidates (the
// datastore's snapshot, unfiltered, comes back decision after decision) and
// the same keys reaches each one's notes without hashing; a candidate that
// differs is looked up and the index rebuilt.
type dispatchIndex struct {
	keys  uint64
	eps   []*endpoint.Endpoint
	notes []*dispatchNotes
}

// dispatchNotes are one endpoint's dispatch times, ascending, as Unix
// nanoseconds (no pointers: trims are plain copies, and the notes a third
// of time.Time's size).
type dispatchNotes struct {
	hostPort string // as first noted
	ts       []int64
	last     int64 // the newest dispatch ever noted, which the sweep reads
}

// NewDispatchLog returns an empty log.
func NewDispatchLog() *DispatchLog { return &DispatchLog{byEP: map[uint64]*dispatchNotes{}} }

// Add notes a request routed to e at t.
func (l *DispatchLog) Add(e *endpoint.Endpoint, t time.Time) { l.add(e.HostPortHash, e.HostPort, t) }

// AddAddress notes a request routed to the endpoint at hostPort at t (an
// address from elsewhere: another replica's dispatches).
func (l *DispatchLog) AddAddress(hostPort string, t time.Time) {
	l.add(endpoint.HashHostPort(hostPort), hostPort, t)
}

func (l *DispatchLog) add(key uint64, hostPort string, t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.byEP[key]
	if n == nil {
		n = &dispatchNotes{hostPort: hostPort}
		l.byEP[key] = n
		l.keys++
	}
	ts := n.ts
	if len(ts) >= 2*maxPendingDispatches {
		ts = ts[:copy(ts, ts[len(ts)-maxPendingDispatches:])]
	}
	ts = append(ts, t.UnixNano())
	// Requests scheduled concurrently may arrive slightly out of order.
	for i := len(ts) - 1; i > 0 && ts[i] < ts[i-1]; i-- {
		ts[i], ts[i-1] = ts[i-1], ts[i]
	}
	n.ts, n.last = ts, max(n.last, ts[len(ts)-1])
	if t.After(l.newer) {
		l.newer = t
	}
	if l.adds++; l.adds%dispatchSweepEvery == 0 {
		l.sweepLocked()
	}
}

// AddUnscraped adds to out[i] the number of requests routed to eps[i] since
// its metrics were taken, forgetting the notes the metrics already cover.
// A note at the scrape's very instant counts: the scrape may have been
// taken first (in virtual time many events share an instant), and counting
// one request twice for an interval is safer than none.
func (l *DispatchLog) AddUnscraped(eps []*endpoint.Endpoint, out []float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.byEP) == 0 {
		return
	}
	floor := l.newer.Add(-maxDispatchAge)
	ix := &l.index
	valid := ix.keys == l.keys && len(ix.eps) == len(eps)
	for i, e := range eps {
		var n *dispatchNotes
		if valid && ix.eps[i] == e {
			n = ix.notes[i]
		} else {
			n, valid = l.byEP[e.HostPortHash], false
		}
		if n == nil || len(n.ts) == 0 {
			continue
		}
		cut := e.Metrics().UpdateTime
		if cut.Before(floor) {
			cut = floor
		}
		ts, cutNs := n.ts, cut.UnixNano()
		k := 0
		for k < len(ts) && ts[k] < cutNs {
			k++
		}
		if k > 0 {
			n.ts = ts[:copy(ts, ts[k:])]
		}
		out[i] += float64(len(n.ts))
	}
	if !valid {
		l.reindex(eps)
	}
}

// reindex makes the index eps's.
func (l *DispatchLog) reindex(eps []*endpoint.Endpoint) {
	ix := &l.index
	ix.keys = l.keys
	ix.eps = append(ix.eps[:0], eps...)
	ix.notes = ix.notes[:0]
	for _, e := range eps {
		ix.notes = append(ix.notes, l.byEP[e.HostPortHash])
	}
}

// Unscraped returns, per address with notes, how many AddUnscraped would
// count now, given the scrape times by address (an address without one is
// bounded by the age limit alone). Unlike AddUnscraped it forgets nothing.
// Each address costs a binary search under the lock.
func (l *DispatchLog) Unscraped(scraped map[string]time.Time) map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int, len(l.byEP))
	floor := l.newer.Add(-maxDispatchAge)
	for _, n := range l.byEP {
		cut := scraped[n.hostPort]
		if cut.Before(floor) {
			cut = floor
		}
		ts, cutNs := n.ts, cut.UnixNano()
		k := sort.Search(len(ts), func(i int) bool { return ts[i] >= cutNs })
		if c := len(ts) - k; c > 0 {
			out[n.hostPort] += c
		}
	}
	return out
}

// sweepLocked forgets endpoints whose newest note is too old to count,
// which is how the notes of endpoints that left the pool go away.
func (l *DispatchLog) sweepLocked() {
	floor := l.newer.Add(-maxDispatchAge).UnixNano()
	for key, n := range l.byEP {
		if n.last <= floor {
			delete(l.byEP, key)
			l.keys++
		}
	}
}

// Pending returns how many notes are kept.
func (l *DispatchLog) Pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, notes := range l.byEP {
		n += len(notes.ts)
	}
	return n
}
