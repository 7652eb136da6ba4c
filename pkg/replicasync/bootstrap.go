package replicasync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
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

// bootstrap is the node's one copy of a peer's index.
type bootstrap struct {
	found    atomic.Bool
	answered chan struct{} // closed when the first peer other than this node answers

	mu     sync.Mutex
	st     bootstrapState // peer and peerID set before answered is closed
	start  time.Time
	finish time.Time
}

// bootstrapState is the bootstrap as State shows it: which peer it copies,
// what came of it, and how much it applied.
type bootstrapState struct {
	Peer       string  `json:"peer,omitempty"`
	PeerID     string  `json:"peerID,omitempty"`
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
// replica: the first such peer is the one the bootstrap copies.
func (n *Node) peerAnswered(addr, id string) {
	if !n.opts.Bootstrap || n.boot.found.Load() {
		return
	}
	b := &n.boot
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.found.Load() {
		return
	}
	b.st.Peer, b.st.PeerID = addr, id
	b.found.Store(true)
	close(b.answered)
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
	addr, id := b.st.Peer, b.st.PeerID
	b.st.Result = bootCopying
	b.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, n.opts.BootstrapTimeout)
	defer cancel()
	err := n.copySnapshot(cctx, addr, id)
	switch {
	case err == nil:
		n.endBootstrap(bootDone, nil)
	case ctx.Err() != nil:
		n.endBootstrap(bootStopped, err)
	case errors.Is(err, errTooLarge):
		n.endBootstrap(bootTooLarge, err)
	case cctx.Err() != nil:
		n.endBootstrap(bootTimeout, err)
	default:
		n.endBootstrap(bootFailed, err)
	}
}

// copySnapshot asks the peer at addr for its snapshot and applies each
// frame as it arrives.
func (n *Node) copySnapshot(ctx context.Context, addr, id string) error {
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
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
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
	n.m.bootstrapResult(result)
	log := n.log.WithValues("peer", st.Peer, "peerID", st.PeerID, "result", result, "insertions", st.Insertions,
		"blocks", st.Blocks, "unknownEndpoint", st.Unknown, "noProducer", st.NoProducer, "bytes", st.Bytes, "seconds", st.Seconds)
	switch result {
	case bootDone:
		log.Info("copied a peer's prefix index")
	case bootNoPeer:
		log.Info("no peer answered to copy the prefix index from; starting with an empty index")
	default:
		log.Error(err, "abandoned copying a peer's prefix index; carrying on with what was applied")
	}
}

// state returns the bootstrap's state; seconds so far while under way.
func (b *bootstrap) state() *bootstrapState {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.st
	switch {
	case !b.finish.IsZero():
		st.Seconds = b.finish.Sub(b.start).Seconds()
	case !b.start.IsZero():
		st.Seconds = time.Since(b.start).Seconds()
	}
	return &st
}
