package replicasync

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openepp/openepp/pkg/fetchfail"
)

const (
	// batchesPath is where a node takes batches, of insertions and
	// dispatches alike.
	batchesPath = "/replicasync/v1/batches"
	// headerReplicaID carries the answering node's ID, so a node that
	// sent to itself (its own address in the peer list) can tell.
	headerReplicaID = "X-Replica-Id"
	contentType     = "application/x-openepp-replica-batch"
	// maxErrorBody is how much of a refusal's body is kept as its error.
	maxErrorBody = 512
	// heartbeatEvery is how long a peer may go without a batch before it
	// is greeted again (see hello).
	heartbeatEvery = 10 * time.Second
)

// peer is one other replica: a bounded queue of batches and the goroutine
// that POSTs them, so a slow peer delays only itself.
type peer struct {
	n      *Node
	addr   string
	url    string
	c      peerCounters
	wake   chan struct{}
	cancel context.CancelFunc // stops the sender; set under Node.peersMu

	mu       sync.Mutex
	queue    []*batch
	queued   int // bytes
	closed   bool
	failing  string // reason of the current run of failures; "" when delivering
	lastErr  string
	remoteID string

	sent, dropped, failed atomic.Uint64
	sentDisp, droppedDisp atomic.Uint64
}

func newPeer(n *Node, addr string) *peer {
	return &peer{n: n, addr: addr, url: "http://" + addr + batchesPath, c: n.m.forPeer(addr), wake: make(chan struct{}, 1)}
}

// SetPeers replaces the set of peers ("host:port" each). Empty strings and
// duplicates are ignored, and so is an address that answered with this
// node's own ID, for as long as it stays listed. Safe to call at any time.
func (n *Node) SetPeers(addrs []string) {
	want := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		if a = strings.TrimSpace(a); a != "" {
			want[a] = true
		}
	}
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	changed := false
	for addr, p := range n.peers {
		if !want[addr] {
			n.removeLocked(p)
			changed = true
		}
	}
	for addr := range n.self {
		if !want[addr] {
			delete(n.self, addr)
		}
	}
	for addr := range want {
		if n.self[addr] || n.peers[addr] != nil {
			continue
		}
		p := newPeer(n, addr)
		n.peers[addr] = p
		if n.spawn != nil {
			n.spawn(p)
		}
		changed = true
	}
	n.peersChangedLocked()
	if changed {
		n.log.Info("replica peers changed", "peers", n.peerAddrsLocked())
	}
}

func (n *Node) removeLocked(p *peer) {
	delete(n.peers, p.addr)
	if p.cancel != nil {
		p.cancel()
	}
	p.close()
	n.m.forget(p.addr)
}

func (n *Node) peersChangedLocked() {
	n.hasPeers.Store(len(n.peers) > 0)
	n.m.setPeers(len(n.peers))
}

func (n *Node) peerAddrsLocked() []string {
	out := make([]string, 0, len(n.peers))
	for a := range n.peers {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// markSelf stops sending to p, which answered with our own ID, and
// remembers its address.
func (n *Node) markSelf(p *peer) {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	if n.peers[p.addr] != p {
		return
	}
	n.removeLocked(p)
	n.self[p.addr] = true
	n.peersChangedLocked()
	n.log.Info("replica peer is this replica; skipping it", "peer", p.addr)
}

// startSenders starts a sender for every peer, and for every peer added
// until stopSenders.
func (n *Node) startSenders(ctx context.Context) {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	n.spawn = func(p *peer) {
		pctx, cancel := context.WithCancel(ctx)
		p.cancel = cancel
		n.senders.Add(1)
		go func() {
			defer n.senders.Done()
			defer cancel()
			p.run(pctx)
		}()
	}
	for _, p := range n.peers {
		n.spawn(p)
	}
}

func (n *Node) stopSenders() {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	n.spawn = nil
	for _, p := range n.peers {
		if p.cancel != nil {
			p.cancel()
		}
	}
}

// enqueue queues b (whose reference it takes) unless the queue is full.
func (p *peer) enqueue(b *batch) {
	p.mu.Lock()
	if p.closed || p.queued+len(b.buf) > p.n.opts.MaxPending {
		closed := p.closed
		p.mu.Unlock()
		if !closed {
			p.drop(dropQueueFull, b.c)
		}
		p.n.release(b)
		return
	}
	p.queue = append(p.queue, b)
	p.queued += len(b.buf)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *peer) next() *batch {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) == 0 {
		return nil
	}
	b := p.queue[0]
	copy(p.queue, p.queue[1:])
	p.queue[len(p.queue)-1] = nil
	p.queue = p.queue[:len(p.queue)-1]
	p.queued -= len(b.buf)
	return b
}

// close releases the queued batches and refuses new ones.
func (p *peer) close() {
	p.mu.Lock()
	q := p.queue
	p.queue, p.queued, p.closed = nil, 0, true
	p.mu.Unlock()
	for _, b := range q {
		p.n.release(b)
	}
}

func (p *peer) drop(reason string, c counts) {
	p.dropped.Add(uint64(c.ins))
	p.droppedDisp.Add(uint64(c.disp))
	if reason == dropQueueFull {
		add(p.c.queueFull, c.ins)
		add(p.c.queueFullDisp, c.disp)
	} else {
		add(p.c.sendFailed, c.ins)
		add(p.c.sendFailedDisp, c.disp)
	}
}

// run greets the peer, then sends queued batches in order until ctx ends,
// greeting it again after heartbeatEvery without a batch.
func (p *peer) run(ctx context.Context) {
	defer p.close()
	p.hello(ctx)
	idle := time.NewTimer(heartbeatEvery)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-idle.C:
			p.hello(ctx)
		case <-p.wake:
		}
		for b := p.next(); b != nil; b = p.next() {
			if ctx.Err() != nil {
				p.n.release(b)
				return
			}
			p.send(ctx, b)
		}
		idle.Reset(heartbeatEvery)
	}
}

// hello sends an empty batch. The answer tells, before any traffic and
// while there is none, whether the peer is this replica itself, whether it
// answers at all, and whether it takes our token, so a misconfiguration
// shows in the logs and metrics at start rather than at the first request.
func (p *peer) hello(ctx context.Context) {
	b := &batch{buf: (&pending{}).appendBatch(nil, p.n.opts.ID)}
	b.refs.Store(1)
	p.send(ctx, b)
}

// send POSTs b, whose reference passes to the request body: b may be
// reused as soon as the transport is done with the body.
func (p *peer) send(ctx context.Context, b *batch) {
	count := b.c
	rctx, cancel := context.WithTimeout(ctx, p.n.opts.SendTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, p.url, nil)
	if err != nil {
		p.n.release(b)
		p.fail(fetchfail.Connect, err, count)
		return
	}
	req.Body, req.ContentLength = &body{n: p.n, b: b}, int64(len(b.buf))
	req.Header.Set("Content-Type", contentType)
	if p.n.opts.Token != nil {
		req.Header.Set("Authorization", "Bearer "+string(p.n.opts.Token))
	}
	resp, err := p.n.client.Do(req)
	if err != nil {
		if ctx.Err() == nil { // else shutting down or removed: not the peer's fault
			p.fail(fetchfail.Classify(err, fetchfail.Connect), err, count)
		}
		return
	}
	defer resp.Body.Close()
	remote := resp.Header.Get(headerReplicaID)
	if remote == p.n.opts.ID {
		p.n.markSelf(p)
		return
	}
	if remote != "" {
		p.n.peerAnswered(p.addr, remote)
	}
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		p.fail(fetchfail.Status, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg))), count)
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // reuse the connection
	p.delivered(count, remote)
}

// fail counts a failed POST and logs only when the reason changes.
func (p *peer) fail(reason string, err error, count counts) {
	p.failed.Add(1)
	p.drop(dropSendFailed, count)
	p.n.m.sendError(p.addr, reason)
	p.mu.Lock()
	changed := p.failing != reason
	p.failing, p.lastErr = reason, err.Error()
	p.mu.Unlock()
	if changed {
		p.n.log.Error(err, "cannot send to replica peer; dropping its batches until it answers", "peer", p.addr, "reason", reason)
	}
}

func (p *peer) delivered(count counts, remote string) {
	p.sent.Add(uint64(count.ins))
	p.sentDisp.Add(uint64(count.disp))
	add(p.c.sent, count.ins)
	add(p.c.sentDisp, count.disp)
	p.mu.Lock()
	was, wasID := p.failing, p.remoteID
	p.failing, p.remoteID = "", remote
	p.mu.Unlock()
	if was != "" {
		p.n.log.Info("replica peer answers again", "peer", p.addr)
	}
	if remote != wasID {
		p.n.log.V(1).Info("replica peer identified", "peer", p.addr, "peerID", remote)
	}
}

// body reads a batch for the transport and releases it on Close. The
// transport may close a body from another goroutine while still reading
// it, so reads and Close exclude each other and a closed body reads EOF.
type body struct {
	mu  sync.Mutex
	n   *Node
	b   *batch
	off int
}

func (r *body) Read(dst []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.b == nil || r.off >= len(r.b.buf) {
		return 0, io.EOF
	}
	k := copy(dst, r.b.buf[r.off:])
	r.off += k
	return k, nil
}

func (r *body) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.b != nil {
		r.n.release(r.b)
		r.b = nil
	}
	return nil
}
