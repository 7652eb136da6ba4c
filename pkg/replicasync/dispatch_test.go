package replicasync

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scorers"
)

// sharer is a fake scheduler.DispatchSharer recording its ApplyDispatches
// calls.
type sharer struct {
	name  string
	mu    sync.Mutex
	calls [][]scheduler.Dispatch
}

var _ scheduler.DispatchSharer = (*sharer)(nil)

func (s *sharer) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: "fake-sharer", Name: s.name}
}
func (s *sharer) SetDispatchPublisher(scheduler.DispatchPublisher) {}
func (s *sharer) ApplyDispatches(ds []scheduler.Dispatch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, slices.Clone(ds))
}

// got returns the calls so far.
func (s *sharer) got() [][]scheduler.Dispatch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// applied returns how many dispatches the calls so far held.
func (s *sharer) applied() int {
	n := 0
	for _, c := range s.got() {
		n += len(c)
	}
	return n
}

// sharers returns a lookup of the given sharers by name.
func sharers(ss ...scheduler.DispatchSharer) func(string) scheduler.DispatchSharer {
	return func(name string) scheduler.DispatchSharer {
		for _, s := range ss {
			if s.TypedName().Name == name {
				return s
			}
		}
		return nil
	}
}

// fixedClock is a clock that stands still.
type fixedClock time.Time

func (c fixedClock) Now() time.Time { return time.Time(c) }

// TestDispatchesReachPeerScorer: a routing decision of A's queue-scorer
// makes B's queue-scorer count the request, and nothing echoes back.
func TestDispatchesReachPeerScorer(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(2)
	a, b := startReplica(t, eps, nil), startReplica(t, eps, nil)
	a.node.SetPeers([]string{b.addr()})
	b.node.SetPeers([]string{a.addr()})
	qa, qb := scorers.NewQueueDepth("queue-scorer"), scorers.NewQueueDepth("queue-scorer")
	qa.SetDispatchPublisher(a.node)
	qb.SetDispatchPublisher(b.node)
	a.node.SetDispatchSharers(sharers(qa))
	b.node.SetDispatchSharers(sharers(qb))

	res := &scheduler.Result{Primary: "decode", Profiles: map[string]*scheduler.ProfileResult{"decode": {Targets: eps[1:]}}}
	for range 3 {
		qa.PreRequest(context.Background(), scheduler.NewState(1, time.Now()), &scheduler.Request{ID: "r"}, res)
	}
	unscraped := func(q *scorers.QueueDepth) map[string]int {
		return q.DumpState().(scorers.QueueDepthState).UnscrapedDispatches
	}
	eventually(t, "B's queue-scorer to count A's 3 dispatches", func() bool { return unscraped(qb)[eps[1].HostPort] == 3 })
	if got := unscraped(qa)[eps[1].HostPort]; got != 3 {
		t.Errorf("A counts %d of its own dispatches, want 3", got)
	}
	eventually(t, "counts", func() bool { p, _ := a.peerState(b.addr()); return p.SentDispatches == 3 })
	if got := testutil.ToFloat64(a.node.m.disp.sent.WithLabelValues(b.addr())); got != 3 {
		t.Errorf("A's sent_dispatches_total{peer=B} = %v, want 3", got)
	}
	if got := testutil.ToFloat64(b.node.m.disp.applied); got != 3 {
		t.Errorf("B's applied_dispatches_total = %v, want 3", got)
	}
	time.Sleep(50 * time.Millisecond) // ten flush intervals: an echo would be back
	if s := a.state(); s.Dispatches.Received != 0 {
		t.Errorf("A received %d dispatches: B echoed what it applied", s.Dispatches.Received)
	}
	if got := unscraped(qa)[eps[1].HostPort]; got != 3 {
		t.Errorf("A counts %d dispatches after B applied them, want still 3", got)
	}
}

// TestDispatchesWithInsertions: what A publishes of both kinds reaches B;
// dispatches without an endpoint or a time are not sent.
func TestDispatchesWithInsertions(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(2)
	a, b := startReplica(t, eps, nil), startReplica(t, eps, nil)
	a.node.SetPeers([]string{b.addr()})
	q := &sharer{name: "queue-scorer"}
	b.node.SetDispatchSharers(sharers(q))

	now := time.Now()
	ins := insertion("mixed", eps[0], 4)
	want := []scheduler.Dispatch{
		{Plugin: "queue-scorer", HostPort: eps[0].HostPort, At: now},
		{Plugin: "queue-scorer", HostPort: eps[1].HostPort, At: now.Add(time.Millisecond)},
	}
	a.node.PublishDispatch(want[0])
	a.node.Publish(ins)
	a.node.PublishDispatch(scheduler.Dispatch{Plugin: "queue-scorer", At: now})                   // no endpoint
	a.node.PublishDispatch(scheduler.Dispatch{Plugin: "queue-scorer", HostPort: eps[0].HostPort}) // no time
	a.node.PublishDispatch(want[1])
	eventually(t, "both kinds at B", func() bool { return q.applied() == 2 && b.blocks(eps[0], ins.Hashes) == 4 })
	var got []scheduler.Dispatch
	for _, c := range q.got() {
		got = append(got, c...)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("applied dispatches (-published +applied):\n%s", diff)
	}
	// A counts a batch once B's answer is back, which can be after B applied it.
	eventually(t, "A to count 2 dispatches and 1 insertion sent", func() bool {
		p, _ := a.peerState(b.addr())
		return p.SentDispatches == 2 && p.Sent == 1
	})
}

// TestMixedBatchApplied: one batch holding insertions and dispatches for
// several plugins, interleaved, applies its insertions, calls each plugin
// once with its dispatches in order, and counts those no plugin takes,
// also when no lookup is set.
func TestMixedBatchApplied(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(2)
	r := startReplica(t, eps, nil)
	q1, q2 := &sharer{name: "q1"}, &sharer{name: "q2"}
	r.node.SetDispatchSharers(sharers(q1, q2))
	now := time.Now()
	d := func(plugin string, ep int, ms int) scheduler.Dispatch {
		return scheduler.Dispatch{Plugin: plugin, HostPort: eps[ep].HostPort, At: now.Add(time.Duration(ms) * time.Millisecond)}
	}
	ds := []scheduler.Dispatch{d("q1", 0, 0), d("q2", 1, 1), d("missing", 0, 2), d("q1", 1, -3), d("q2", 0, 4), d("q1", 0, 5)}
	ins := insertion("mixed", eps[1], 3)
	body := encodeBatch("peer", []prefix.Insertion{ins}, ds)
	if code, msg, _ := post(t, r, "", bytes.NewReader(body)); code != http.StatusNoContent {
		t.Fatalf("mixed batch: %d %q, want 204", code, msg)
	}
	if diff := cmp.Diff([][]scheduler.Dispatch{{ds[0], ds[3], ds[5]}}, q1.got()); diff != "" {
		t.Errorf("q1's calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([][]scheduler.Dispatch{{ds[1], ds[4]}}, q2.got()); diff != "" {
		t.Errorf("q2's calls (-want +got):\n%s", diff)
	}
	if got := r.blocks(eps[1], ins.Hashes); got != 3 {
		t.Errorf("the batch's insertion: %d blocks, want 3", got)
	}
	want := dispatchStats{Received: 6, Applied: 5, NoPlugin: 1}
	if diff := cmp.Diff(want, r.state().Dispatches); diff != "" {
		t.Errorf("dispatch counts (-want +got):\n%s", diff)
	}
	if got := testutil.ToFloat64(r.node.m.disp.noPlugin); got != 1 {
		t.Errorf("no_plugin_dispatches_total = %v, want 1", got)
	}

	r.node.SetDispatchSharers(nil)
	if code, msg, _ := post(t, r, "", bytes.NewReader(encodeBatch("peer", nil, ds))); code != http.StatusNoContent {
		t.Fatalf("dispatches only: %d %q, want 204", code, msg)
	}
	want = dispatchStats{Received: 12, Applied: 5, NoPlugin: 7}
	if diff := cmp.Diff(want, r.state().Dispatches); diff != "" {
		t.Errorf("dispatch counts without a lookup (-want +got):\n%s", diff)
	}
	if got := len(q1.got()) + len(q2.got()); got != 2 {
		t.Errorf("%d calls after the lookup was removed, want the 2 from before", got)
	}
}

// TestAdmitDispatches: the bounds on a received dispatch's time.
func TestAdmitDispatches(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		at      time.Time
		want    time.Time // zero: dropped
		clamped bool
	}{
		{name: "now", at: now, want: now},
		{name: "a flush interval ago", at: now.Add(-20 * time.Millisecond), want: now.Add(-20 * time.Millisecond)},
		{name: "just within the age bound", at: now.Add(-maxDispatchAge + time.Millisecond), want: now.Add(-maxDispatchAge + time.Millisecond)},
		{name: "at the age bound", at: now.Add(-maxDispatchAge), want: now.Add(-maxDispatchAge)},
		{name: "past the age bound", at: now.Add(-maxDispatchAge - time.Millisecond)},
		{name: "an hour old", at: now.Add(-time.Hour)},
		{name: "the epoch", at: time.Unix(0, 0)},
		{name: "a few ms ahead (skew)", at: now.Add(3 * time.Millisecond), want: now.Add(3 * time.Millisecond)},
		{name: "at the lead bound", at: now.Add(maxDispatchLead), want: now.Add(maxDispatchLead)},
		{name: "past the lead bound", at: now.Add(maxDispatchLead + time.Millisecond), want: now, clamped: true},
		{name: "a day ahead", at: now.Add(24 * time.Hour), want: now, clamped: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			kept, clamped := admitDispatches([]scheduler.Dispatch{{Plugin: "q", HostPort: "h:1", At: tc.at}}, now)
			switch {
			case tc.want.IsZero() && len(kept) != 0:
				t.Errorf("kept at %s, want dropped", kept[0].At)
			case !tc.want.IsZero() && (len(kept) != 1 || !kept[0].At.Equal(tc.want)):
				t.Errorf("kept %v, want one at %s", kept, tc.want)
			}
			if clamped != map[bool]int{true: 1}[tc.clamped] {
				t.Errorf("clamped %d, want %v", clamped, tc.clamped)
			}
		})
	}
}

// TestDispatchClockBounds: a receiver applies what its clock admits, drops
// stale dispatches and clamps those from the future, counting both.
func TestDispatchClockBounds(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(1)
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	r := startReplica(t, eps, func(o *Options) { o.Clock = fixedClock(now) })
	q := &sharer{name: "q"}
	r.node.SetDispatchSharers(sharers(q))
	at := func(d time.Duration) scheduler.Dispatch {
		return scheduler.Dispatch{Plugin: "q", HostPort: eps[0].HostPort, At: now.Add(d)}
	}
	ds := []scheduler.Dispatch{at(-time.Millisecond), at(-time.Minute), at(time.Minute), at(-maxDispatchAge - time.Second), at(maxDispatchLead / 2)}
	if code, msg, _ := post(t, r, "", bytes.NewReader(encodeBatch("peer", nil, ds))); code != http.StatusNoContent {
		t.Fatalf("batch: %d %q, want 204", code, msg)
	}
	want := [][]scheduler.Dispatch{{at(-time.Millisecond), at(0), at(maxDispatchLead / 2)}}
	if diff := cmp.Diff(want, q.got()); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(dispatchStats{Received: 5, Applied: 3, Stale: 2, Clamped: 1}, r.state().Dispatches); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	if got := testutil.ToFloat64(r.node.m.disp.stale); got != 2 {
		t.Errorf("stale_dispatches_total = %v, want 2", got)
	}
	if got := testutil.ToFloat64(r.node.m.disp.clamped); got != 1 {
		t.Errorf("clamped_dispatches_total = %v, want 1", got)
	}
}

// TestDispatchesDropped: dispatches past the pending limit, or for a peer
// that does not answer, are counted per peer and reason.
func TestDispatchesDropped(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(1)
	a := startReplica(t, eps, nil)
	dead := deadAddr(t)
	a.node.SetPeers([]string{dead})
	a.node.PublishDispatch(scheduler.Dispatch{Plugin: "q", HostPort: eps[0].HostPort, At: time.Now()})
	eventually(t, "the dead peer's dispatch dropped", func() bool { p, _ := a.peerState(dead); return p.DroppedDispatches == 1 })
	if got := testutil.ToFloat64(a.node.m.disp.dropped.WithLabelValues(dead, dropSendFailed)); got != 1 {
		t.Errorf("dropped_dispatches_total{reason=send_failed} = %v, want 1", got)
	}

	// A node that never flushes on its own: the pending buffer fills.
	n, err := New(Options{Listen: "127.0.0.1:0", MaxPending: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	n.SetPeers([]string{"127.0.0.1:1"})
	const published = 2000
	for i := range published {
		n.PublishDispatch(scheduler.Dispatch{Plugin: "queue-scorer", HostPort: eps[0].HostPort, At: time.Unix(1, int64(i))})
	}
	if n.pendingDropped.disp == 0 {
		t.Fatalf("no dispatch dropped past a %d-byte limit", n.pendingLimit)
	}
	n.flush()
	queued := 0
	for _, pr := range n.peers {
		pr.mu.Lock()
		for _, b := range pr.queue {
			queued += b.c.disp
		}
		pr.mu.Unlock()
	}
	p := n.State().(state).Peers[0]
	if p.DroppedDispatches == 0 || int(p.DroppedDispatches)+queued != published {
		t.Errorf("%d dispatches dropped and %d queued, want some dropped and %d in all", p.DroppedDispatches, queued, published)
	}
	n.SetPeers(nil)
}

// TestSnapshotRefusesDispatches: snapshot frames carry no dispatches.
func TestSnapshotRefusesDispatches(t *testing.T) {
	t.Parallel()
	body := encodeBatch("a", nil, []scheduler.Dispatch{{Plugin: "q", HostPort: "h:1", At: time.Unix(5, 0)}})
	if _, err := readAll(append(frame(body), endFrame...), 4<<10, 1<<16); err == nil || !strings.Contains(err.Error(), "snapshots carry none") {
		t.Errorf("a frame with a dispatch: %v, want refused", err)
	}
}
