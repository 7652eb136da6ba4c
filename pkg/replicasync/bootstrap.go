package replicasync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Results of a bootstrap (the result label of
// openepp_replica_sync_bootstrap_total).
const (
	bootDone     = "done"
	bootFailed   = "failed"
	bootTimeout  = "timeout"
	bootTooLarge = "too_large"
	bootNoPeer   = "no_peer"
)

// bootResults lists them, for the metric's series.
var bootResults = []string{bootDone, bootFailed, bootTimeout, bootTooLarge, bootNoPeer}

// States of a bootstrap under way, shown by State.
const (
	bootWaiting = "waiting" // for a peer to answer, or for SetProducers
	bootCopying = "copying"
	bootStopped = "stopped" // Run ended first; not counted
)

const (
	// headerStarting marks a snapshot refused because the asked replica is
	// copying a peer's index itself: what it holds is a partial copy.
	headerStarting = "X-Replica-Starting"
	// maxBootstrapPeers bounds the peers a bootstrap remembers to ask.
	maxBootstrapPeers = 64
	// retryPause separates asking again the peers that were busy serving
	// other snapshots or still starting.
	retryPause = time.Second
)

// errPeersStarting ends a bootstrap whose every peer was itself starting
// (replicas started together): none has an index worth copying yet.
var errPeersStarting = errors.New("every peer that answered is itself copying an index")

// refusal is a peer's 503 to a snapshot request: busy, or starting.
type refusal struct {
	starting bool
	msg      string
}

func (r *refusal) Error() string { return r.msg }

// peerRef is a peer that answered a greeting as another replica.
type peerRef struct{ addr, id string }

// bootstrap is the node's one copy of a peer's index.
type bootstrap struct {
	found    atomic.Bool
	answered chan struct{} // closed when the first peer other than this node answers
	// copying is set while the node copies a peer's index; it refuses to
	// serve its own meanwhile. ended is set once the bootstrap is over.
	copying, ended atomic.Bool

	mu     sync.Mutex
	peers  []peerRef // that answered, in the order they did
	st     bootstrapState
	start  time.Time
	finish time.Time
}

// bootstrapState is the bootstrap as State shows it: which peer it copies,
// what came of it, and how much it applied.
type bootstrapState struct {
	Peer       string  `json:"peer,omitempty"` // the one copied, or being asked
	PeerID     string  `json:"peerID,omitempty"`
	Attempts   int     `json:"attempts"` // snapshot requests made
	Result     string  `json:"result"`
	Insertions uint64  `json:"insertions"` // applied
	Blocks     uint64  `json:"blocks"`     // hashes received
	Unknown    uint64  `json:"unknownEndpoint"`
	NoProducer uint64  `json:"noProducer"`
	Bytes      int64   `json:"bytes"`
	Seconds    float64 `json:"seconds"`
	Error      string  `json:"error,omitempty"`
}

// peerAnswered notes that the peer at addr answered a POST as id, another
// replica: the bootstrap asks such peers for a snapshot in the order they
// answered, moving on when one fails or refuses.
func (n *Node) peerAnswered(addr, id string) {
	b := &n.boot
	if !n.opts.Bootstrap || b.ended.Load() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.peers) >= maxBootstrapPeers || slices.ContainsFunc(b.peers, func(p peerRef) bool { return p.id == id }) {
		return
	}
	b.peers = append(b.peers, peerRef{addr, id})
	if !b.found.Load() {
		b.found.Store(true)
		close(b.answered)
	}
}

// nextPeer returns the first peer that answered and is not in tried.
func (b *bootstrap) nextPeer(tried map[string]bool) (peerRef, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.peers {
		if !tried[p.id] {
			return p, true
		}
	}
	return peerRef{}, false
}

// bootstrap waits (at most BootstrapTimeout) for a peer to answer and for
// a producer lookup, then copies that peer's snapshot (at most
// BootstrapTimeout again), and logs and counts the result once.
func (n *Node) bootstrap(ctx context.Context) {
	b := &n.boot
	b.mu.Lock()
	b.start = time.Now()
	b.mu.Unlock()
	wait := time.NewTimer(n.opts.BootstrapTimeout)
	defer wait.Stop()
	for _, ch := range []<-chan struct{}{b.answered, n.hasLookup} {
		select {
		case <-ctx.Done():
			n.endBootstrap(bootStopped, nil)
			return
		case <-wait.C:
			if b.found.Load() {
				n.endBootstrap(bootFailed, errors.New("no producers to apply a snapshot to (SetProducers was not called)"))
			} else {
				n.endBootstrap(bootNoPeer, nil)
			}
			return
		case <-ch:
		}
	}
	if n.opts.BootstrapReady != nil {
		if n.opts.BootstrapReady(ctx); ctx.Err() != nil {
			n.endBootstrap(bootStopped, nil)
			return
		}
	}
	b.mu.Lock()
	b.st.Result = bootCopying
	b.mu.Unlock()
	b.copying.Store(true)
	cctx, cancel := context.WithTimeout(ctx, n.opts.BootstrapTimeout)
	defer cancel()
	err := n.copyFromPeers(cctx)
	switch {
	case err == nil:
		n.endBootstrap(bootDone, nil)
	case ctx.Err() != nil:
		n.endBootstrap(bootStopped, err)
	case errors.Is(err, errTooLarge):
		n.endBootstrap(bootTooLarge, err)
	case errors.Is(err, errPeersStarting):
		n.endBootstrap(bootNoPeer, err)
	case cctx.Err() != nil:
		n.endBootstrap(bootTimeout, err)
	default:
		n.endBootstrap(bootFailed, err)
	}
}

// copyFromPeers asks the peers that answered, in that order, for a
// snapshot until one is copied whole. A peer that fails (gone in a rolling
// update, cut off mid-stream) is not asked again: what it sent stays
// applied, and the next one's copy goes over it. Peers that refuse because
// they are busy or starting themselves are asked again after retryPause;
// when every peer was starting on two rounds, there is nothing to copy.
func (n *Node) copyFromPeers(ctx context.Context) error {
	tried := map[string]bool{}
	var last error
	for startingRounds := 0; ; {
		var retry []peerRef
		allStarting := true
		for {
			p, ok := n.boot.nextPeer(tried)
			if !ok {
				break
			}
			tried[p.id] = true
			err := n.copySnapshot(ctx, p.addr, p.id)
			var ref *refusal
			switch {
			case err == nil:
				return nil
			case errors.Is(err, errTooLarge), ctx.Err() != nil:
				return err
			case errors.As(err, &ref):
				retry = append(retry, p)
				allStarting = allStarting && ref.starting
			default:
				allStarting = false
			}
			last = err
		}
		if len(retry) == 0 {
			return last
		}
		if allStarting {
			if startingRounds++; startingRounds == 2 {
				return fmt.Errorf("%w (last: %v)", errPeersStarting, last)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(retryPause):
		}
		for _, p := range retry {
			delete(tried, p.id)
		}
	}
}

// copySnapshot asks the peer at addr for its snapshot and applies each
// frame as it arrives.
func (n *Node) copySnapshot(ctx context.Context, addr, id string) error {
	n.boot.mu.Lock()
	n.boot.st.Peer, n.boot.st.PeerID = addr, id
	n.boot.st.Attempts++
	n.boot.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+snapshotPath, nil)
	if err != nil {
		return err
	}
	if n.opts.Token != nil {
		req.Header.Set("Authorization", "Bearer "+string(n.opts.Token))
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		text := fmt.Sprintf("%s: %s: %s", addr, resp.Status, strings.TrimSpace(string(msg)))
		if resp.StatusCode == http.StatusServiceUnavailable {
			return &refusal{starting: resp.Header.Get(headerStarting) != "", msg: text}
		}
		return errors.New(text)
	}
	if got := resp.Header.Get(headerReplicaID); got != id {
		return fmt.Errorf("snapshot answered by replica %q, not %q", got, id)
	}
	fr := &frameReader{r: resp.Body, maxFrame: n.opts.MaxBatchBytes, maxTotal: int64(n.opts.MaxSnapshotBytes)}
	defer func() {
		n.boot.mu.Lock()
		n.boot.st.Bytes = fr.read
		n.boot.mu.Unlock()
	}()
	for {
		d, err := fr.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if d.sender != id {
			return fmt.Errorf("frame %d: from replica %q in a snapshot of %q", fr.frames-1, d.sender, id)
		}
		n.applySnapshot(d, fr.read)
	}
}

// applySnapshot applies one frame and counts it; read is the bytes read
// so far.
func (n *Node) applySnapshot(d *decoded, read int64) {
	applied, unknown, none := applyAll(n.lookup(), d.insertions)
	n.m.bootstrapApplied(applied)
	n.boot.mu.Lock()
	defer n.boot.mu.Unlock()
	st := &n.boot.st
	st.Insertions += uint64(applied)
	st.Blocks += uint64(len(d.hashes))
	st.Unknown += uint64(unknown)
	st.NoProducer += uint64(none)
	st.Bytes = read
}

// endBootstrap records the result, counts it (unless Run is stopping) and
// logs it once.
func (n *Node) endBootstrap(result string, err error) {
	b := &n.boot
	b.ended.Store(true)
	b.copying.Store(false)
	if result != bootStopped {
		// Counted before the state shows the result, so that whoever
		// reads the result finds it counted.
		n.m.bootstrapResult(result)
	}
	b.mu.Lock()
	b.finish, b.st.Result = time.Now(), result
	if err != nil {
		b.st.Error = err.Error()
	}
	st := b.st
	st.Seconds = b.finish.Sub(b.start).Seconds()
	b.mu.Unlock()
	if result == bootStopped {
		return
	}
	log := n.log.WithValues("peer", st.Peer, "peerID", st.PeerID, "result", result, "insertions", st.Insertions,
		"blocks", st.Blocks, "unknownEndpoint", st.Unknown, "noProducer", st.NoProducer, "bytes", st.Bytes, "seconds", st.Seconds)
	switch result {
	case bootDone:
		log.Info("copied a peer's prefix index")
	case bootNoPeer:
		if err != nil {
			log.Info("no peer had a prefix index to copy: they are starting too", "reason", err.Error())
			break
		}
		log.Info("no peer answered to copy the prefix index from; starting with an empty index")
	default:
		log.Error(err, "abandoned copying a peer's prefix index; carrying on with what was applied")
	}
}

// state returns the bootstrap's state; seconds so far while under way, and
// before the first request the peer it will ask first.
func (b *bootstrap) state() *bootstrapState {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.st
	if st.Attempts == 0 && len(b.peers) > 0 {
		st.Peer, st.PeerID = b.peers[0].addr, b.peers[0].id
	}
	switch {
	case !b.finish.IsZero():
		st.Seconds = b.finish.Sub(b.start).Seconds()
	case !b.start.IsZero():
		st.Seconds = time.Since(b.start).Seconds()
	}
	return &st
}
