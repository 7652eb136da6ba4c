package replicasync

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestBootstrapMovesOnToTheNextPeer: a peer that breaks off its snapshot
// (gone in a rolling update) is left for the next one that answered, whose
// copy completes; what the first sent stays applied.
func TestBootstrapMovesOnToTheNextPeer(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(2)
	a := startReplica(t, eps, nil)
	fill(a, eps, 8)
	early := insertion("early", eps[0], 3)
	var b atomic.Pointer[replica]
	var broken string
	broken = fakePeer(t, "leaving", func(w http.ResponseWriter, r *http.Request) {
		// Let the good peer answer too before breaking off, so there is
		// a next one to move on to.
		b.Load().node.SetPeers([]string{broken, a.addr()})
		for deadline := time.Now().Add(waitFor); answeredPeers(b.Load()) < 2 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(frame(encode("leaving", early)))
	})
	b.Store(startReplica(t, eps, func(o *Options) { o.Bootstrap = true }))
	b.Load().node.SetPeers([]string{broken})
	st := bootstrapped(t, b.Load())
	if st.Result != bootDone || st.Peer != a.addr() || st.Attempts != 2 {
		t.Fatalf("bootstrap %+v, want done from %s on the second attempt", st, a.addr())
	}
	if st.Blocks != uint64(a.prod.Index().Len())+3 || b.Load().blocks(eps[0], early.Hashes) != 3 {
		t.Errorf("bootstrap %+v: want the leaving peer's 3 blocks kept and all %d of the next one's", st, a.prod.Index().Len())
	}
}

// answeredPeers is how many peers have answered r's greeting as replicas.
func answeredPeers(r *replica) int {
	r.node.boot.mu.Lock()
	defer r.node.boot.mu.Unlock()
	return len(r.node.boot.peers)
}

// TestBootstrapRefusedWhileStarting: a replica copying a peer's index
// refuses to hand out its own partial copy; a replica asking only it finds
// nothing to copy after two rounds, one that can ask another copies that.
func TestBootstrapRefusedWhileStarting(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(2)
	a := startReplica(t, eps, nil)
	fill(a, eps, 4)
	release := make(chan struct{})
	hang := fakePeer(t, "hanging", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		_ = http.NewResponseController(w).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) })
	starting := startReplica(t, eps, func(o *Options) { o.Bootstrap = true })
	starting.node.SetPeers([]string{hang})
	eventually(t, "the starting replica to copy", func() bool { return starting.state().Bootstrap.Attempts == 1 })

	resp, err := http.Get("http://" + starting.addr() + snapshotPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(headerStarting) == "" {
		t.Errorf("snapshot of a starting replica: %s, %s %q; want 503 marked starting", resp.Status, headerStarting, resp.Header.Get(headerStarting))
	}

	alone := startReplica(t, eps, func(o *Options) { o.Bootstrap = true })
	alone.node.SetPeers([]string{starting.addr()})
	st := bootstrapped(t, alone)
	if st.Result != bootNoPeer || st.Attempts != 2 || !strings.Contains(st.Error, "itself copying") || bootResult(alone, bootNoPeer) != 1 {
		t.Errorf("asking only a starting peer: bootstrap %+v, want no_peer after 2 attempts", st)
	}

	other := startReplica(t, eps, func(o *Options) { o.Bootstrap = true })
	other.node.SetPeers([]string{starting.addr(), a.addr()})
	if st := bootstrapped(t, other); st.Result != bootDone || st.Peer != a.addr() || st.Blocks != uint64(a.prod.Index().Len()) {
		t.Errorf("with a ready peer beside the starting one: bootstrap %+v, want done from %s", st, a.addr())
	}
}

// TestBootstrapRetriesABusyPeer: a peer busy serving other snapshots is
// asked again after retryPause.
func TestBootstrapRetriesABusyPeer(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(1)
	ins := insertion("served", eps[0], 5)
	var asked atomic.Int32
	busy := fakePeer(t, "busy", func(w http.ResponseWriter, _ *http.Request) {
		if asked.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "busy: serving other snapshots", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(raw(frame(encode("busy", ins)), endFrame))
	})
	b := startReplica(t, eps, func(o *Options) { o.Bootstrap = true })
	b.node.SetPeers([]string{busy})
	st := bootstrapped(t, b)
	if st.Result != bootDone || st.Attempts != 2 || st.Seconds < retryPause.Seconds() || b.blocks(eps[0], ins.Hashes) != 5 {
		t.Errorf("bootstrap %+v, want done on the second attempt, a pause apart", st)
	}
}
