// Package replicasync lets active-active EPP replicas share their
// prefix-cache routing decisions. Each replica's approximate index
// (pkg/prefix) otherwise knows only the requests the proxy happened to send
// that replica; a Node publishes what its producers record to every peer
// and applies what the peers record, so every index reflects the whole
// gateway's traffic.
//
// The same batches carry dispatches (scheduler.Dispatch): the requests a
// dispatch-sharing plugin such as the queue-scorer routed, so that each
// replica counts the requests all replicas sent an endpoint since its
// last scrape, not a third of them (see dispatch.go).
//
// Insertions and dispatches are buffered as they are published (a mutex and an append,
// on the request path), sealed into one binary batch every FlushInterval
// and POSTed to each peer by that peer's own sender goroutine, so a slow or
// dead peer delays nobody else. Delivery is best effort: the index is a
// routing hint, so a batch that cannot be sent is dropped and counted, not
// retried.
//
// A node started with Options.Bootstrap also copies, once, the index of a
// peer: it asks the peers that answered its greeting, in that order, for a
// snapshot (GET /replicasync/v1/snapshot, streamed frames of batches) and
// applies it as it arrives, moving on when one fails or is itself starting,
// so a replica that restarts, as all do in a rolling update, does not start
// from an empty index.
package replicasync

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
)

// Defaults of Options.
const (
	DefaultFlushInterval = 5 * time.Millisecond
	DefaultMaxPending    = 4 << 20
	DefaultSendTimeout   = 2 * time.Second
	DefaultMaxBatchBytes = 8 << 20
	// DefaultBootstrapTimeout bounds the wait for a peer to answer, and
	// then the copy of its snapshot.
	DefaultBootstrapTimeout = 30 * time.Second
	// DefaultMaxSnapshotBytes is the most of a snapshot a node reads: a
	// full default index (100 endpoints × 31,250 blocks) takes about 26 MB.
	DefaultMaxSnapshotBytes = 512 << 20
	// shutdownGrace bounds how long Run waits for requests being served
	// when it stops.
	shutdownGrace = time.Second
	// headerReserve is room kept in a batch for its header, counts and
	// dispatch base time (at most 185 bytes).
	headerReserve = 256
	// earlyFlushBytes seals a batch before the tick once this much is
	// pending, keeping batches (and a peer's decode) small under load.
	earlyFlushBytes = 256 << 10
)

// Options configure a Node. Zero values take the defaults.
type Options struct {
	// ID is this replica's identity; default: random 16 hex characters.
	// Letters, digits and ".-_:" only, at most 128.
	ID string
	// Listen is the address peers reach this node on, e.g. ":9004".
	Listen string
	// Listener, instead of Listen, is an open listener to serve on, for a
	// caller that must know the address before Run; Run closes it.
	Listener net.Listener
	// Token is the shared secret peers present (Authorization: Bearer);
	// nil accepts anyone who can reach Listen.
	Token []byte
	// FlushInterval is how often pending insertions and dispatches are
	// sent.
	FlushInterval time.Duration
	// MaxPending is how many bytes of encoded insertions and dispatches
	// are buffered for one peer; past it new ones are dropped and counted.
	MaxPending int
	// SendTimeout bounds one batch POST.
	SendTimeout time.Duration
	// Dial, when set, opens the connections to peers instead of a plain
	// TCP dial: tests map the pod IPs of EndpointSlices (which may not be
	// loopback addresses) onto 127.0.0.1.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxBatchBytes is the largest body accepted from a peer (413 beyond);
	// this node's own batches stay below it too.
	MaxBatchBytes int
	// Bootstrap makes the node copy, once, the index of a peer other than
	// itself that answered its greeting (see bootstrap.go); off by default.
	Bootstrap bool
	// BootstrapReady, when set, returns once this replica knows its pool's
	// endpoints (or ctx ended): a snapshot is copied only then, since
	// insertions naming endpoints it does not know yet would be dropped.
	BootstrapReady func(ctx context.Context)
	// BootstrapTimeout bounds the wait for a peer to answer, and then the
	// copy of its snapshot; what was applied before it expired stays.
	BootstrapTimeout time.Duration
	// MaxSnapshotBytes is the most of a peer's snapshot this node reads;
	// it stops there, keeping what it applied.
	MaxSnapshotBytes int
	// Clock is this replica's clock, which received dispatches' times
	// are checked against (see maxDispatchLead); default: the real one.
	Clock scheduler.Clock
	Log   logr.Logger
	// Registerer gets the node's collectors; nil: no metrics.
	Registerer prometheus.Registerer
}

// Node is one replica's end of the sync: publisher to its peers and
// receiver of theirs.
type Node struct {
	opts      Options
	tokenHash [sha256.Size]byte
	log       logr.Logger
	m         *telemetry
	transport *http.Transport
	client    *http.Client
	// pendingLimit caps the pending buffer so a sealed batch fits
	// MaxBatchBytes and MaxPending.
	pendingLimit int
	flushBytes   int

	mu             sync.Mutex // guards cur and pendingDropped
	cur            *pending
	pendingDropped counts
	spare          *pending // owned by the flusher
	flushNow       chan struct{}
	hasPeers       atomic.Bool

	peersMu sync.Mutex
	peers   map[string]*peer
	self    map[string]bool // addresses that answered with our own ID
	spawn   func(*peer)     // starts a peer's sender; set while Run runs
	senders sync.WaitGroup  // the peers' senders and the bootstrap
	scratch []*peer         // the flusher's snapshot of peers

	producers atomic.Pointer[producerSet]
	sharers   atomic.Pointer[func(string) scheduler.DispatchSharer]
	// hasLookup is closed by the first SetProducers with a lookup, which
	// the bootstrap waits for.
	hasLookup     chan struct{}
	hasLookupOnce sync.Once
	boot          bootstrap
	serving       chan struct{} // a slot per snapshot being served
	batches       sync.Pool     // *batch
	decoders      sync.Pool     // *decoder
	recv          receiveStats

	started atomic.Bool
	ready   chan struct{}
	addr    atomic.Pointer[net.Addr]
}

// New validates opts and returns a node that does nothing until Run.
func New(opts Options) (*Node, error) {
	if err := defaults(&opts); err != nil {
		return nil, err
	}
	m, err := newTelemetry(opts.Registerer)
	if err != nil {
		return nil, err
	}
	dial := opts.Dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: opts.SendTimeout, KeepAlive: 30 * time.Second}).DialContext
	}
	tr := &http.Transport{
		Proxy:               nil, // peers are in-cluster; never via an HTTP proxy
		DialContext:         dial,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	n := &Node{
		opts: opts, log: opts.Log.WithValues("replica", opts.ID), m: m,
		transport: tr, client: &http.Client{Transport: tr},
		pendingLimit: min(opts.MaxPending, opts.MaxBatchBytes-headerReserve),
		cur:          newPending(), spare: newPending(), flushNow: make(chan struct{}, 1),
		peers: map[string]*peer{}, self: map[string]bool{}, ready: make(chan struct{}),
		hasLookup: make(chan struct{}), boot: bootstrap{answered: make(chan struct{}), st: bootstrapState{Result: bootWaiting}},
		serving: make(chan struct{}, maxSnapshotsServed),
	}
	n.flushBytes = min(earlyFlushBytes, n.pendingLimit/2)
	if opts.Listener != nil {
		addr := opts.Listener.Addr()
		n.addr.Store(&addr)
	}
	if opts.Token != nil {
		n.tokenHash = sha256.Sum256(opts.Token)
	} else {
		n.log.Info("warning: replica sync has no token; anyone who can reach its port can write into the prefix index")
	}
	n.batches.New = func() any { return &batch{} }
	n.decoders.New = func() any { return &decoder{} }
	return n, nil
}

func defaults(o *Options) error {
	var errs []error
	if o.ID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		o.ID = hex.EncodeToString(b[:])
	}
	if !validID(o.ID) {
		errs = append(errs, fmt.Errorf("id: %q must be 1 to %d letters, digits or .-_:", o.ID, maxIDLen))
	}
	switch {
	case o.Listen == "" && o.Listener == nil:
		errs = append(errs, errors.New("listen: required (or a listener)"))
	case o.Listen != "" && o.Listener != nil:
		errs = append(errs, errors.New("listen: set either an address or a listener, not both"))
	}
	switch {
	case o.Token != nil && len(o.Token) == 0:
		errs = append(errs, errors.New("token: empty; use nil for no token"))
	case slices.ContainsFunc(o.Token, func(c byte) bool { return c <= ' ' || c > '~' }):
		errs = append(errs, errors.New("token: only printable ASCII without spaces can travel in an Authorization header"))
	}
	o.Token = bytes.Clone(o.Token)
	def := func(name string, v *time.Duration, d time.Duration) {
		if *v < 0 {
			errs = append(errs, fmt.Errorf("%s: must be >= 0, got %s", name, *v))
		} else if *v == 0 {
			*v = d
		}
	}
	def("flushInterval", &o.FlushInterval, DefaultFlushInterval)
	def("sendTimeout", &o.SendTimeout, DefaultSendTimeout)
	def("bootstrapTimeout", &o.BootstrapTimeout, DefaultBootstrapTimeout)
	defInt := func(name string, v *int, d, least int) {
		if *v == 0 {
			*v = d
		} else if *v < least {
			errs = append(errs, fmt.Errorf("%s: must be >= %d, got %d", name, least, *v))
		}
	}
	defInt("maxPending", &o.MaxPending, DefaultMaxPending, 4<<10)
	defInt("maxBatchBytes", &o.MaxBatchBytes, DefaultMaxBatchBytes, 4<<10)
	defInt("maxSnapshotBytes", &o.MaxSnapshotBytes, DefaultMaxSnapshotBytes, 4<<10)
	if o.Log.GetSink() == nil {
		o.Log = logr.Discard()
	}
	if o.Clock == nil {
		o.Clock = scheduler.RealClock{}
	}
	return errors.Join(errs...)
}

func validID(id string) bool {
	if id == "" || len(id) > maxIDLen {
		return false
	}
	for _, c := range []byte(id) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '-' || c == '_' || c == ':'
		if !ok {
			return false
		}
	}
	return true
}

// ID returns this replica's identity.
func (n *Node) ID() string { return n.opts.ID }

// Addr returns the address Run listens on: nil before it listens, unless
// Options.Listener was given.
func (n *Node) Addr() net.Addr {
	if a := n.addr.Load(); a != nil {
		return *a
	}
	return nil
}

// Ready is closed once Run listens (never if listening fails).
func (n *Node) Ready() <-chan struct{} { return n.ready }

// producerSet is what SetProducers sets.
type producerSet struct {
	lookup func(string) prefix.Sharer
	serve  []*prefix.Producer
}

// SetProducers sets where received insertions go: lookup finds the
// producer of an insertion's name (an approximate prefix producer, or a
// precise one sharing its speculative entries); nil (or a nil answer)
// drops them, counted. serve lists the producers whose indexes a snapshot copies to a
// starting peer, in order; without them, snapshots are empty. Call it
// again after every config reload.
func (n *Node) SetProducers(lookup func(name string) prefix.Sharer, serve ...*prefix.Producer) {
	if lookup == nil && len(serve) == 0 {
		n.producers.Store(nil)
		return
	}
	n.producers.Store(&producerSet{lookup: lookup, serve: slices.Clone(serve)})
	if lookup != nil {
		n.hasLookupOnce.Do(func() { close(n.hasLookup) })
	}
}

// lookup returns the producer lookup set by SetProducers, or nil.
func (n *Node) lookup() func(string) prefix.Sharer {
	if set := n.producers.Load(); set != nil {
		return set.lookup
	}
	return nil
}

var _ prefix.Publisher = (*Node)(nil)

// Publish implements prefix.Publisher: it appends ins to the pending batch
// and never waits on the network. Without peers it does nothing; past the
// pending limit it drops ins, counted for every peer at the next flush.
func (n *Node) Publish(ins prefix.Insertion) {
	if len(ins.Hashes) == 0 || ins.BlockSizeTokens <= 0 || !n.hasPeers.Load() {
		return
	}
	if p := n.lockPending(bound(ins), &n.pendingDropped.ins); p != nil {
		p.add(ins)
		n.unlockPending(p)
	}
}

// lockPending locks the pending batch and returns it when need more bytes
// fit under the limit; otherwise it counts one in dropped and returns nil,
// unlocked. A caller that got the batch appends and calls unlockPending.
func (n *Node) lockPending(need int, dropped *int) *pending {
	n.mu.Lock()
	if n.cur.size()+need > n.pendingLimit {
		*dropped++
		n.mu.Unlock()
		return nil
	}
	return n.cur
}

// unlockPending unlocks the batch p lockPending returned, asking for an
// early flush when it is full.
func (n *Node) unlockPending(p *pending) {
	full := p.size() >= n.flushBytes
	n.mu.Unlock()
	if full {
		n.flushSoon()
	}
}

// flushSoon wakes the flusher before its tick: a batch has filled up.
func (n *Node) flushSoon() {
	select {
	case n.flushNow <- struct{}{}:
	default:
	}
}

// Run listens on Options.Listen (or serves Options.Listener), serves peers and sends batches every
// FlushInterval (and, with Options.Bootstrap, copies a peer's index once)
// until ctx ends, then stops serving (waiting at most ~1s)
// and returns once all its goroutines have ended. It returns an error only
// if it cannot listen, or was called before.
func (n *Node) Run(ctx context.Context) error {
	if !n.started.CompareAndSwap(false, true) {
		return errors.New("replica sync: Run called twice")
	}
	ln := n.opts.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", n.opts.Listen); err != nil {
			return fmt.Errorf("replica sync: listen: %w", err)
		}
	}
	addr := ln.Addr()
	n.addr.Store(&addr)
	srv := &http.Server{
		Handler: n.handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		IdleTimeout: 2 * time.Minute,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	n.log.Info("replica sync listening", "listen", addr.String())
	close(n.ready)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n.startSenders(ctx)
	if n.opts.Bootstrap {
		n.senders.Go(func() { n.bootstrap(ctx) })
	}
	n.flushLoop(ctx)

	n.stopSenders()
	sctx, scancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	<-served
	n.senders.Wait()
	n.transport.CloseIdleConnections()
	return nil
}

func (n *Node) flushLoop(ctx context.Context) {
	t := time.NewTicker(n.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.flushNow:
		}
		n.flush()
	}
}

// flush seals the pending insertions and dispatches into one batch and
// queues it for every peer. Only one goroutine flushes at a time (Run's).
func (n *Node) flush() {
	n.mu.Lock()
	p, dropped := n.cur, n.pendingDropped
	if p.n == 0 && p.nd == 0 && dropped == (counts{}) {
		n.mu.Unlock()
		return
	}
	n.cur, n.spare, n.pendingDropped = n.spare, p, counts{}
	n.mu.Unlock()

	var b *batch
	if p.n > 0 || p.nd > 0 {
		b = n.batches.Get().(*batch)
		b.buf, b.c = p.appendBatch(b.buf[:0], n.opts.ID), counts{ins: p.n, disp: p.nd}
	}
	p.reset()

	n.peersMu.Lock()
	peers := n.scratch[:0]
	for _, pr := range n.peers {
		peers = append(peers, pr)
	}
	n.peersMu.Unlock()
	if b != nil {
		b.refs.Store(int32(len(peers)) + 1) // one for each peer, one for us
	}
	for _, pr := range peers {
		if dropped != (counts{}) {
			pr.drop(dropQueueFull, dropped)
		}
		if b != nil {
			pr.enqueue(b)
		}
	}
	if b != nil {
		n.release(b)
	}
	clear(peers)
	n.scratch = peers[:0]
}

// batch is one sealed, encoded batch, shared read-only by the peers it is
// queued for and returned to the pool when the last is done with it.
type batch struct {
	buf  []byte
	c    counts
	refs atomic.Int32
}

// counts are the insertions and dispatches of a batch, or of what was
// dropped or delivered.
type counts struct{ ins, disp int }

func (n *Node) release(b *batch) {
	if b.refs.Add(-1) == 0 {
		n.batches.Put(b)
	}
}
