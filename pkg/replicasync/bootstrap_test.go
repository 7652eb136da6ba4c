package replicasync

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
)

// exported returns, per endpoint, what p's index holds: each shard's list
// oldest first, shard after shard (Export's order, every record's hashes
// turned back oldest first), whatever the batch boundaries.
func exported(p *prefix.Producer) map[string][]uint64 {
	out := map[string][]uint64{}
	p.Export(func(batch []prefix.Insertion) bool {
		for _, ins := range batch {
			hs := slices.Clone(ins.Hashes)
			slices.Reverse(hs)
			out[ins.HostPort] = append(out[ins.HostPort], hs...)
		}
		return true
	})
	return out
}

// fill records n prompts of up to 256 blocks for every endpoint in eps.
func fill(r *replica, eps []*endpoint.Endpoint, n int) {
	for i := range n {
		for j, e := range eps {
			ins := insertion(fmt.Sprintf("fill-%d-%d", i, j), e, 1+(i*37+j*11)%256)
			r.prod.Index().Insert(e, ins.Hashes, prefix.DefaultLRUCapacityPerServer)
		}
	}
}

// bootstrapped waits until r's bootstrap ends and returns its state.
func bootstrapped(t *testing.T, r *replica) *bootstrapState {
	t.Helper()
	var st *bootstrapState
	eventually(t, "the bootstrap to end", func() bool {
		st = r.state().Bootstrap
		return st != nil && st.Result != bootWaiting && st.Result != bootCopying
	})
	return st
}

func bootResult(r *replica, result string) float64 {
	return testutil.ToFloat64(r.node.m.bootResult.WithLabelValues(result))
}

// TestBootstrapCopiesPeer: a replica started with Bootstrap and a filled
// peer ends with the peer's index for every endpoint it knows, in the same
// LRU order; insertions for the endpoint it does not know are counted.
// Small frames make the server split Export's batches.
func TestBootstrapCopiesPeer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		maxBatchBytes int
	}{{name: "default frames"}, {name: "small frames", maxBatchBytes: 8 << 10}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			eps := newEndpoints(4)
			small := func(o *Options) { o.MaxBatchBytes = tc.maxBatchBytes }
			a := startReplica(t, eps, small)
			fill(a, eps, 60)
			b := startReplica(t, eps[:3], func(o *Options) { small(o); o.Bootstrap = true })
			b.node.SetPeers([]string{a.addr()})
			st := bootstrapped(t, b)
			if st.Result != bootDone || st.Peer != a.addr() || st.PeerID != a.node.ID() || st.Error != "" {
				t.Fatalf("bootstrap %+v, want done from %s (%s)", st, a.addr(), a.node.ID())
			}
			want, got := exported(a.prod), exported(b.prod)
			for _, e := range eps[:3] {
				if len(want[e.HostPort]) == 0 {
					t.Fatalf("fixture: %s holds nothing", e.HostPort)
				}
				if diff := cmp.Diff(want[e.HostPort], got[e.HostPort]); diff != "" {
					t.Errorf("%s: copied index differs (-peer +copy):\n%s", e.HostPort, diff)
				}
			}
			if len(got[eps[3].HostPort]) != 0 || st.Unknown == 0 {
				t.Errorf("unknown endpoint: %d blocks copied, %d insertions counted unknown; want none, some", len(got[eps[3].HostPort]), st.Unknown)
			}
			if st.Blocks != uint64(a.prod.Index().Len()) || st.Insertions == 0 || st.Bytes < int64(8*st.Blocks) {
				t.Errorf("bootstrap counted %d blocks (peer holds %d), %d insertions, %d bytes", st.Blocks, a.prod.Index().Len(), st.Insertions, st.Bytes)
			}
			if got := testutil.ToFloat64(b.node.m.bootIns); got != float64(st.Insertions) {
				t.Errorf("bootstrap_insertions_total = %v, want %d", got, st.Insertions)
			}
			if bootResult(b, bootDone) != 1 || bootResult(b, bootFailed) != 0 {
				t.Errorf("bootstrap_total: done %v, failed %v; want 1, 0", bootResult(b, bootDone), bootResult(b, bootFailed))
			}
			if a.state().Bootstrap != nil {
				t.Error("a node without Bootstrap shows a bootstrap state")
			}
		})
	}
}

// TestBootstrapSkipsSelf: this node's own address among its peers is
// never the one copied; with only itself listed, no peer answers.
func TestBootstrapSkipsSelf(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(2)
	a := startReplica(t, eps, nil)
	fill(a, eps, 4)
	boot := func(o *Options) { o.Bootstrap, o.BootstrapTimeout = true, 500*time.Millisecond }
	b, alone := startReplica(t, eps, boot), startReplica(t, eps, boot)
	b.node.SetPeers([]string{b.addr(), a.addr()})
	alone.node.SetPeers([]string{alone.addr()})
	if st := bootstrapped(t, b); st.Result != bootDone || st.Peer != a.addr() {
		t.Errorf("bootstrap %+v, want done from %s", st, a.addr())
	}
	if st := bootstrapped(t, alone); st.Result != bootNoPeer || st.Peer != "" {
		t.Errorf("alone: bootstrap %+v, want no_peer", st)
	}
	if bootResult(alone, bootNoPeer) != 1 || len(alone.state().Self) != 1 {
		t.Errorf("alone: bootstrap_total{no_peer} = %v, self %v", bootResult(alone, bootNoPeer), alone.state().Self)
	}
}

// fakePeer serves what a peer would: it answers batches as replica id and
// snapshots with snapshot. It closes when the test ends.
func fakePeer(t *testing.T, id string, snapshot http.HandlerFunc) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc(batchesPath, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set(headerReplicaID, id)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc(snapshotPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(headerReplicaID, id)
		snapshot(w, r)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestBootstrapTimeout: a peer that sends the snapshot's headers and then
// nothing is abandoned after BootstrapTimeout; meanwhile and afterwards
// the node still applies its peers' batches.
func TestBootstrapTimeout(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(1)
	stalled, release := make(chan struct{}), make(chan struct{})
	hang := fakePeer(t, "hanging", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		_ = http.NewResponseController(w).Flush()
		close(stalled)
		select {
		case <-r.Context().Done():
		case <-release: // the server's Close waits for its requests
		}
	})
	t.Cleanup(func() { close(release) })
	b := startReplica(t, eps, func(o *Options) { o.Bootstrap, o.BootstrapTimeout = true, time.Second })
	a := startReplica(t, eps, nil)
	a.node.SetPeers([]string{b.addr()})
	b.node.SetPeers([]string{hang})
	select {
	case <-stalled:
	case <-time.After(waitFor):
		t.Fatal("no snapshot request after 5s")
	}
	during := insertion("during", eps[0], 3)
	a.node.Publish(during)
	eventually(t, "a batch applied while the snapshot stalls", func() bool { return b.blocks(eps[0], during.Hashes) == 3 })
	if st := b.state().Bootstrap; st.Result != bootCopying {
		t.Errorf("bootstrap %q while stalled, want copying", st.Result)
	}
	st := bootstrapped(t, b)
	if st.Result != bootTimeout || st.Seconds < 1 || bootResult(b, bootTimeout) != 1 {
		t.Errorf("bootstrap %+v (counted %v), want timeout after 1s", st, bootResult(b, bootTimeout))
	}
	after := insertion("after", eps[0], 2)
	a.node.Publish(after)
	eventually(t, "a batch applied after the timeout", func() bool { return b.blocks(eps[0], after.Hashes) == 2 })
}

// TestBootstrapWrongToken: a peer that refuses this node's token answers
// the snapshot request 401: failed, and said why.
func TestBootstrapWrongToken(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(1)
	a := startReplica(t, eps, func(o *Options) { o.Token = []byte("s3cret") })
	b := startReplica(t, eps, func(o *Options) { o.Token, o.Bootstrap = []byte("other"), true })
	b.node.SetPeers([]string{a.addr()})
	st := bootstrapped(t, b)
	if st.Result != bootFailed || !strings.Contains(st.Error, "401") || !strings.Contains(st.Error, "wrong token") {
		t.Errorf("bootstrap %+v, want failed with 401 wrong token", st)
	}
	if bootResult(b, bootFailed) != 1 {
		t.Errorf("bootstrap_total{failed} = %v, want 1", bootResult(b, bootFailed))
	}
}

// TestBootstrapBrokenStreams: every way a snapshot can be wrong fails the
// bootstrap, saying why, without a panic; frames before the problem stay
// applied.
func TestBootstrapBrokenStreams(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(1)
	first := insertion("first", eps[0], 4)
	good := frame(encode("peer", first))
	tests := []struct {
		name, want string
		status     int
		answeredBy string
		body       []byte
	}{
		{name: "cut in a frame", body: raw(good, good[:20]), want: "unexpected EOF"},
		{name: "cut in a length", body: raw(good, good[:2]), want: "frame 1 length: unexpected EOF"},
		{name: "no end frame", body: good, want: "without its end frame"},
		{name: "malformed frame", body: raw(good, frame([]byte("OERS\x01junk"))), want: "frame 1:"},
		{name: "frame over maxBatchBytes", body: raw(good, binary.BigEndian.AppendUint32(nil, 1<<30)), want: "more than this replica's maxBatchBytes"},
		{name: "another sender", body: raw(good, frame(encode("other", first)), endFrame), want: `from replica "other"`},
		{name: "bytes after the end", body: raw(good, endFrame, []byte{1}), want: "bytes after the end frame"},
		{name: "not found", status: http.StatusNotFound, want: "404"},
		{name: "another replica answers", answeredBy: "restarted", body: raw(good, endFrame), want: `answered by replica "restarted"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := fakePeer(t, "peer", func(w http.ResponseWriter, _ *http.Request) {
				if tc.answeredBy != "" {
					w.Header().Set(headerReplicaID, tc.answeredBy)
				}
				w.WriteHeader(statusOr(tc.status, http.StatusOK))
				_, _ = w.Write(tc.body)
			})
			b := startReplica(t, eps, func(o *Options) { o.Bootstrap = true })
			b.node.SetPeers([]string{addr})
			st := bootstrapped(t, b)
			if st.Result != bootFailed || !strings.Contains(st.Error, tc.want) {
				t.Errorf("bootstrap %+v, want failed mentioning %q", st, tc.want)
			}
			if tc.status == 0 && tc.answeredBy == "" && (b.blocks(eps[0], first.Hashes) != 4 || st.Insertions != 1) {
				t.Errorf("the good first frame was not kept: %d blocks, %d insertions", b.blocks(eps[0], first.Hashes), st.Insertions)
			}
		})
	}
}

func statusOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

// TestBootstrapTooLarge: a snapshot beyond MaxSnapshotBytes is cut there,
// counted too_large, and what came before stays applied.
func TestBootstrapTooLarge(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(3)
	a := startReplica(t, eps, func(o *Options) { o.MaxBatchBytes = 8 << 10 })
	fill(a, eps, 40)
	b := startReplica(t, eps, func(o *Options) { o.Bootstrap, o.MaxSnapshotBytes = true, 64<<10 })
	b.node.SetPeers([]string{a.addr()})
	st := bootstrapped(t, b)
	if st.Result != bootTooLarge || !strings.Contains(st.Error, "maxSnapshotBytes") || bootResult(b, bootTooLarge) != 1 {
		t.Errorf("bootstrap %+v (counted %v), want too_large", st, bootResult(b, bootTooLarge))
	}
	if st.Bytes > 64<<10 || st.Bytes < 48<<10 || st.Insertions == 0 || b.prod.Index().Len() == 0 {
		t.Errorf("read %d bytes, applied %d insertions, index holds %d; want just under 64 KiB, some, some",
			st.Bytes, st.Insertions, b.prod.Index().Len())
	}
}

// TestBootstrapWaitsForProducers: a node whose producers are set only
// after a peer answered copies the snapshot then; one whose producers are
// never set gives up after BootstrapTimeout.
func TestBootstrapWaitsForProducers(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(2)
	a := startReplica(t, eps, nil)
	fill(a, eps, 4)
	for _, late := range []bool{true, false} {
		n, err := New(Options{Listen: "127.0.0.1:0", Bootstrap: true, BootstrapTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		run(t, n)
		n.SetPeers([]string{a.addr()})
		eventually(t, "the peer to answer", func() bool { return n.State().(state).Bootstrap.Peer == a.addr() })
		if st := n.State().(state).Bootstrap; st.Result != bootWaiting {
			t.Fatalf("bootstrap %+v before SetProducers, want waiting", st)
		}
		if late {
			h := &scheduler.Handle{Log: logr.Discard(), Endpoints: func() []*endpoint.Endpoint { return eps }}
			pr, err := prefix.NewProducer(producerName, prefix.DefaultParams(), h)
			if err != nil {
				t.Fatal(err)
			}
			n.SetProducers(func(string) prefix.Sharer { return pr })
		}
		var st *bootstrapState
		eventually(t, "the bootstrap to end", func() bool {
			st = n.State().(state).Bootstrap
			return st.Result != bootWaiting && st.Result != bootCopying
		})
		switch {
		case late && (st.Result != bootDone || st.Blocks != uint64(a.prod.Index().Len()) || st.Insertions == 0):
			t.Errorf("producers set late: bootstrap %+v, want done with %d blocks", st, a.prod.Index().Len())
		case !late && (st.Result != bootFailed || !strings.Contains(st.Error, "no producers")):
			t.Errorf("producers never set: bootstrap %+v, want failed for want of producers", st)
		}
	}
}

// TestBootstrapWaitsForThePool: with BootstrapReady, the copy starts only
// once the replica knows its pool, so no insertion is lost as naming an
// unknown endpoint.
func TestBootstrapWaitsForThePool(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(2)
	a := startReplica(t, eps, nil)
	fill(a, eps, 4)
	poolKnown := make(chan struct{})
	b := startReplica(t, eps, func(o *Options) {
		o.Bootstrap = true
		o.BootstrapReady = func(ctx context.Context) {
			select {
			case <-ctx.Done():
			case <-poolKnown:
			}
		}
	})
	b.node.SetPeers([]string{a.addr()})
	eventually(t, "the peer to answer", func() bool { return b.state().Bootstrap.Peer == a.addr() })
	time.Sleep(50 * time.Millisecond)
	if st := b.state().Bootstrap; st.Result != bootWaiting || st.Insertions != 0 {
		t.Fatalf("bootstrap %+v before the pool is known, want waiting", st)
	}
	close(poolKnown)
	eventually(t, "the bootstrap to end", func() bool { return b.state().Bootstrap.Result == bootDone })
	if st := b.state().Bootstrap; st.Blocks != uint64(a.prod.Index().Len()) {
		t.Errorf("bootstrap %+v, want %d blocks", st, a.prod.Index().Len())
	}
}

// TestBootstrapStopped: a node stopped while it copies returns promptly
// and counts no result.
func TestBootstrapStopped(t *testing.T) {
	t.Parallel()
	stalled, release := make(chan struct{}), make(chan struct{})
	hang := fakePeer(t, "hanging", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		close(stalled)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) })
	reg := prometheus.NewRegistry()
	n, err := New(Options{Listen: "127.0.0.1:0", Bootstrap: true, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	n.SetProducers(func(string) prefix.Sharer { return nil })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	<-n.Ready()
	n.SetPeers([]string{hang})
	select {
	case <-stalled:
	case <-time.After(waitFor):
		t.Fatal("no snapshot request after 5s")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Run did not return within 3s while copying")
	}
	if st := n.State().(state).Bootstrap; st.Result != bootStopped {
		t.Errorf("bootstrap %+v, want stopped", st)
	}
	for _, r := range bootResults {
		if got := testutil.ToFloat64(n.m.bootResult.WithLabelValues(r)); got != 0 {
			t.Errorf("bootstrap_total{result=%q} = %v, want 0", r, got)
		}
	}
}
