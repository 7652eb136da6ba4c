package replicasync

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openepp/openepp/pkg/fetchfail"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
)

func TestNewValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts Options
		want []string // substrings of the error; none: valid
	}{
		{name: "defaults", opts: Options{Listen: ":0"}},
		{name: "no listen", opts: Options{}, want: []string{"listen: required"}},
		{name: "listen and listener", opts: Options{Listen: ":0", Listener: &net.TCPListener{}}, want: []string{"not both"}},
		{name: "bad id", opts: Options{Listen: ":0", ID: "a b"}, want: []string{`id: "a b"`}},
		{name: "id too long", opts: Options{Listen: ":0", ID: strings.Repeat("a", 129)}, want: []string{"id:"}},
		{name: "empty token", opts: Options{Listen: ":0", Token: []byte{}}, want: []string{"token: empty"}},
		{name: "token with a newline", opts: Options{Listen: ":0", Token: []byte("s3cret\n")}, want: []string{"token: only printable"}},
		{name: "every bad value at once", opts: Options{Listen: ":0", FlushInterval: -1, SendTimeout: -1, MaxPending: 10, MaxBatchBytes: 10,
			BootstrapTimeout: -1, MaxSnapshotBytes: 10},
			want: []string{"flushInterval: must be >= 0", "sendTimeout: must be >= 0", "maxPending: must be >= 4096", "maxBatchBytes: must be >= 4096",
				"bootstrapTimeout: must be >= 0", "maxSnapshotBytes: must be >= 4096"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n, err := New(tc.opts)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if len(n.ID()) != 16 || n.opts.FlushInterval != DefaultFlushInterval || n.opts.MaxPending != DefaultMaxPending ||
					n.opts.SendTimeout != DefaultSendTimeout || n.opts.MaxBatchBytes != DefaultMaxBatchBytes ||
					n.opts.Bootstrap || n.opts.BootstrapTimeout != DefaultBootstrapTimeout || n.opts.MaxSnapshotBytes != DefaultMaxSnapshotBytes {
					t.Errorf("defaults not applied: id %q, %+v", n.ID(), n.opts)
				}
				return
			}
			if err == nil {
				t.Fatalf("New accepted %+v", tc.opts)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestInsertionReachesEveryPeer: what A publishes shows up in B's and C's
// indexes, and what B publishes in A's.
func TestInsertionReachesEveryPeer(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(3)
	a, b, c := startReplica(t, eps, nil), startReplica(t, eps, nil), startReplica(t, eps, nil)
	a.node.SetPeers([]string{b.addr(), c.addr()})
	b.node.SetPeers([]string{a.addr(), c.addr()})

	ins := insertion("from-a", eps[1], 8)
	a.node.Publish(ins)
	eventually(t, "A's insertion in B's and C's indexes", func() bool {
		return b.blocks(eps[1], ins.Hashes) == 8 && c.blocks(eps[1], ins.Hashes) == 8
	})
	if got := a.blocks(eps[1], ins.Hashes); got != 0 {
		t.Errorf("A's own index got %d blocks from its own Publish; the producer records those, not the node", got)
	}
	back := insertion("from-b", eps[2], 4)
	b.node.Publish(back)
	eventually(t, "B's insertion in A's index", func() bool { return a.blocks(eps[2], back.Hashes) == 4 })

	eventually(t, "counts", func() bool {
		p, _ := a.peerState(b.addr())
		return p.Sent == 1 && b.state().Applied >= 1 && c.state().Applied == 2
	})
	if got := testutil.ToFloat64(a.node.m.peers); got != 2 {
		t.Errorf("openepp_replica_sync_peers = %v, want 2", got)
	}
	if got := testutil.ToFloat64(b.node.m.applied); got != 1 {
		t.Errorf("B's applied_insertions_total = %v, want 1", got)
	}
	if p, _ := a.peerState(b.addr()); p.ID != b.node.ID() {
		t.Errorf("A knows B as %q, want %q", p.ID, b.node.ID())
	}
	if _, err := json.Marshal(a.node.State()); err != nil {
		t.Errorf("State is not JSON: %v", err)
	}
}

// TestProducerDecisionsTravel: a routing decision recorded by A's producer
// (Produce, then PreRequest) makes B's producer match the same prompt.
func TestProducerDecisionsTravel(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(2)
	a, b := startReplica(t, eps, nil), startReplica(t, eps, nil)
	a.node.SetPeers([]string{b.addr()})

	prompt := []byte(`[{"role":"user","content":"` + strings.Repeat("tell me about replicas ", 40) + `"}]`)
	req := &scheduler.Request{ID: "r", Model: "m", Body: &request.Body{API: request.ChatCompletions, Model: "m", Prompt: prompt, Raw: prompt}}
	res := &scheduler.Result{Primary: "decode", Profiles: map[string]*scheduler.ProfileResult{"decode": {Targets: eps[:1]}}}
	route := func(pr *prefix.Producer) *prefix.Match {
		st := scheduler.NewState(1, time.Time{})
		pr.Produce(context.Background(), st, req, eps)
		m, _ := pr.Match(st)
		return m
	}
	st := scheduler.NewState(1, time.Time{})
	a.prod.Produce(context.Background(), st, req, eps)
	a.prod.PreRequest(context.Background(), st, req, res)
	want := route(a.prod).Blocks(eps[0])
	if want == 0 {
		t.Fatal("A's own index does not match its decision")
	}
	eventually(t, "B to match A's decision", func() bool { return route(b.prod).Blocks(eps[0]) == want })
}

// TestSelfSkipped: this node's own address in its peer list is found out
// by the first batch and skipped from then on, also across SetPeers.
func TestSelfSkipped(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(1)
	a, b := startReplica(t, eps, nil), startReplica(t, eps, nil)
	peers := []string{a.addr(), b.addr(), "", b.addr()}
	a.node.SetPeers(peers)
	// The greeting finds self before any insertion is published.
	eventually(t, "self to be detected", func() bool { return len(a.state().Self) == 1 })
	ins := insertion("x", eps[0], 2)
	a.node.Publish(ins)
	eventually(t, "B to get the insertion", func() bool { return b.blocks(eps[0], ins.Hashes) == 2 })
	s := a.state()
	if s.Self[0] != a.addr() || len(s.Peers) != 1 || s.Peers[0].Addr != b.addr() {
		t.Errorf("state = self %v, peers %+v; want self %s, peers [%s]", s.Self, s.Peers, a.addr(), b.addr())
	}
	if got := testutil.ToFloat64(a.node.m.peers); got != 1 {
		t.Errorf("peers after = %v, want 1", got)
	}
	if s.Received != 0 {
		t.Errorf("A applied %d insertions from itself", s.Received)
	}
	a.node.SetPeers(peers)
	if s := a.state(); len(s.Self) != 1 || len(s.Peers) != 1 {
		t.Errorf("after SetPeers again: self %v, peers %+v; want self remembered", s.Self, s.Peers)
	}
}

// TestBadPeersDoNotDelayOthers: a peer that refuses connections and one
// that never answers are counted and logged once, while a healthy peer
// keeps getting every insertion promptly.
func TestBadPeersDoNotDelayOthers(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(1)
	var logs logRecorder
	dead, hang := deadAddr(t), hangingAddr(t)
	a := startReplica(t, eps, func(o *Options) { o.SendTimeout = 200 * time.Millisecond; o.Log = logs.logger() })
	b := startReplica(t, eps, nil)
	a.node.SetPeers([]string{dead, hang, b.addr()})
	for i := range 20 {
		ins := insertion(strings.Repeat("i", i+1), eps[0], 3)
		a.node.Publish(ins)
		start := time.Now()
		eventually(t, "B to get the insertion", func() bool { return b.blocks(eps[0], ins.Hashes) == 3 })
		if d := time.Since(start); d > time.Second {
			t.Errorf("insertion %d took %s to reach the healthy peer", i, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	eventually(t, "failures counted", func() bool {
		d, _ := a.peerState(dead)
		h, _ := a.peerState(hang)
		return d.Failed >= 2 && h.Failed >= 1 && d.Failing == fetchfail.Refused && h.Failing == fetchfail.Timeout
	})
	if got := testutil.ToFloat64(a.node.m.sendErrors.WithLabelValues(dead, fetchfail.Refused)); got < 2 {
		t.Errorf("send_errors_total{peer=dead,reason=connection_refused} = %v, want >= 2", got)
	}
	if got := testutil.ToFloat64(a.node.m.dropped.WithLabelValues(dead, dropSendFailed)); got < 2 {
		t.Errorf("dropped_insertions_total{peer=dead,reason=send_failed} = %v, want >= 2", got)
	}
	if got := logs.count("cannot send to replica peer"); got != 2 {
		t.Errorf("failures logged %d times, want 2 (once per failing peer)", got)
	}
	if p, _ := a.peerState(b.addr()); p.Sent != 20 || p.Failed != 0 {
		t.Errorf("healthy peer: %+v, want 20 sent, none failed", p)
	}
}

// TestPeerRecoveryLoggedOnce: a peer that is down and then comes up on
// the same address is logged failing once and answering again once.
func TestPeerRecoveryLoggedOnce(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(1)
	var logs logRecorder
	addr := deadAddr(t)
	a := startReplica(t, eps, func(o *Options) { o.Log = logs.logger() })
	a.node.SetPeers([]string{addr})
	// Publish until three sends have failed: a loaded machine may flush
	// several publications in one batch, so a fixed count may not make three.
	i := 0
	eventually(t, "failures", func() bool {
		i++
		a.node.Publish(insertion(strings.Repeat("d", i), eps[0], 1))
		time.Sleep(15 * time.Millisecond)
		p, _ := a.peerState(addr)
		return p.Failed >= 3
	})
	b := startReplica(t, eps, func(o *Options) { o.Listen = addr })
	ins := insertion("up", eps[0], 2)
	eventually(t, "delivery after recovery", func() bool {
		a.node.Publish(ins)
		return b.blocks(eps[0], ins.Hashes) == 2
	})
	eventually(t, "recovery logged", func() bool { return logs.count("replica peer answers again") == 1 })
	if got := logs.count("cannot send to replica peer"); got != 1 {
		t.Errorf("failure logged %d times, want once", got)
	}
	if p, _ := a.peerState(addr); p.Failing != "" || p.LastError == "" {
		t.Errorf("peer state %+v: want not failing, last error kept", p)
	}
}

// TestUnknownEndpointAndProducer: insertions naming an endpoint not in
// the receiver's pool, or a producer it does not have, are counted.
func TestUnknownEndpointAndProducer(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(2)
	a, b := startReplica(t, eps, nil), startReplica(t, eps[:1], nil)
	a.node.SetPeers([]string{b.addr()})
	a.node.Publish(insertion("known", eps[0], 2))
	a.node.Publish(insertion("unknown", eps[1], 2))
	other := insertion("other", eps[0], 2)
	other.Producer = "other-producer"
	a.node.Publish(other)
	eventually(t, "three received", func() bool { return b.state().Received == 3 })
	s := b.state()
	if s.Applied != 1 || s.Unknown != 1 || s.NoProducer != 1 {
		t.Errorf("applied %d, unknown %d, no producer %d; want 1 each", s.Applied, s.Unknown, s.NoProducer)
	}
	if got := testutil.ToFloat64(b.node.m.unknown); got != 1 {
		t.Errorf("unknown_endpoint_insertions_total = %v, want 1", got)
	}
	b.node.SetProducers(nil)
	a.node.Publish(insertion("after", eps[0], 2))
	eventually(t, "dropped without producers", func() bool { return b.state().NoProducer == 2 })
}

// TestSetPeersWhileSending changes the peer set while insertions flow
// (run with -race); afterwards the final set gets everything.
func TestSetPeersWhileSending(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(1)
	a, b, c := startReplica(t, eps, nil), startReplica(t, eps, nil), startReplica(t, eps, nil)
	sets := [][]string{{b.addr()}, {b.addr(), c.addr()}, {c.addr()}, nil, {c.addr(), b.addr(), a.addr()}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			a.node.Publish(insertion("flow", eps[0], 1+i%8))
		}
	})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			a.node.SetPeers(sets[i%len(sets)])
			_ = a.node.State()
		}
	})
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	a.node.SetPeers([]string{b.addr(), c.addr()})
	ins := insertion("final", eps[0], 5)
	eventually(t, "final insertion in B and C", func() bool {
		a.node.Publish(ins)
		return b.blocks(eps[0], ins.Hashes) == 5 && c.blocks(eps[0], ins.Hashes) == 5
	})
}

// TestPeerSeriesRemoved: a peer's series go when the peer does.
func TestPeerSeriesRemoved(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(1)
	a, b := startReplica(t, eps, nil), startReplica(t, eps, nil)
	dead := deadAddr(t)
	a.node.SetPeers([]string{b.addr(), dead})
	a.node.Publish(insertion("m", eps[0], 1))
	eventually(t, "sent and failed", func() bool {
		p, _ := a.peerState(dead)
		return testutil.ToFloat64(a.node.m.sent.WithLabelValues(b.addr())) == 1 && p.Failed >= 1
	})
	a.node.SetPeers([]string{b.addr()})
	if n := peerSeries(t, a.reg, dead); n != 0 {
		t.Errorf("%d series of the removed peer remain", n)
	}
	if n := peerSeries(t, a.reg, b.addr()); n == 0 {
		t.Error("the remaining peer's series went too")
	}
}

// peerSeries counts the series labelled peer=addr in reg.
func peerSeries(t *testing.T, reg *prometheus.Registry, addr string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "peer" && l.GetValue() == addr {
					n++
				}
			}
		}
	}
	return n
}

// TestRunLifecycle: Run reports a listen error, refuses a second call,
// and returns promptly even with a POST hanging.
func TestRunLifecycle(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(1)
	a := startReplica(t, eps, nil)
	if err := a.node.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("second Run = %v, want an error", err)
	}
	n, err := New(Options{Listen: a.addr()})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Errorf("Run on a taken address = %v, want a listen error", err)
	}
	if n.Addr() != nil {
		t.Errorf("Addr = %v before listening, want nil", n.Addr())
	}

	hung, err := New(Options{Listen: "127.0.0.1:0", SendTimeout: time.Minute, FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	hung.SetPeers([]string{hangingAddr(t)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hung.Run(ctx) }()
	<-hung.Ready()
	hung.Publish(insertion("h", eps[0], 1))
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Errorf("Run took %s to stop", d)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Run did not return with a POST hanging")
	}
}

// TestListener: a node given an open listener knows its address before
// Run, serves on it, and closes it when Run ends.
func TestListener(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := startReplica(t, eps, func(o *Options) { o.Listen, o.Listener = "", ln })
	if b.addr() != ln.Addr().String() {
		t.Errorf("Addr = %s, want the listener's %s", b.addr(), ln.Addr())
	}
	a := startReplica(t, eps, nil)
	a.node.SetPeers([]string{b.addr()})
	ins := insertion("l", eps[0], 2)
	a.node.Publish(ins)
	eventually(t, "delivery through the given listener", func() bool { return b.blocks(eps[0], ins.Hashes) == 2 })
}
