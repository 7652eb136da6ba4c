package replicasync

import (
	"slices"
	"strings"
)

// state is State's snapshot, shaped for a debug page.
type state struct {
	ID         string            `json:"id"`
	Listen     string            `json:"listen,omitempty"`
	Peers      []peerState       `json:"peers"`
	Self       []string          `json:"self,omitempty"`
	Received   uint64            `json:"received"`
	Applied    uint64            `json:"applied"`
	Unknown    uint64            `json:"unknownEndpoint"`
	NoProducer uint64            `json:"noProducer"`
	Rejected   map[string]uint64 `json:"rejected"`
	// Dispatches counts the dispatches received from peers.
	Dispatches dispatchStats `json:"dispatches"`
	// Bootstrap is the copy of a peer's index at start (Options.Bootstrap).
	Bootstrap *bootstrapState `json:"bootstrap,omitempty"`
}

type peerState struct {
	Addr    string `json:"addr"`
	ID      string `json:"id,omitempty"`
	Sent    uint64 `json:"sent"`
	Dropped uint64 `json:"dropped"`
	Failed  uint64 `json:"failed"`
	// SentDispatches and DroppedDispatches count dispatches as Sent and
	// Dropped count insertions.
	SentDispatches    uint64 `json:"sentDispatches"`
	DroppedDispatches uint64 `json:"droppedDispatches"`
	QueuedBytes       int    `json:"queuedBytes"`
	Failing           string `json:"failing,omitempty"`
	LastError         string `json:"lastError,omitempty"`
}

// State returns a JSON-serialisable snapshot: this node's ID, each peer's
// counts (insertions and dispatches sent and dropped, POSTs failed) and
// last error, the totals received from peers (insertions; dispatches
// received, applied, stale, clamped and naming no plugin), and with Options.Bootstrap the copy of a
// peer's index at start: from which peer, its result (waiting, copying,
// then done, failed, timeout, too_large or no_peer), the insertions it
// applied and the seconds it took.
func (n *Node) State() any {
	s := state{
		ID: n.opts.ID, Peers: []peerState{},
		Received: n.recv.received.Load(), Applied: n.recv.applied.Load(),
		Unknown: n.recv.unknown.Load(), NoProducer: n.recv.noProducer.Load(),
		Rejected: map[string]uint64{
			rejectBadToken: n.recv.badToken.Load(), rejectTooLarge: n.recv.tooLarge.Load(),
			rejectMalformed: n.recv.malformed.Load(), rejectVersion: n.recv.version.Load(),
		},
		Dispatches: n.recv.disp.load(),
	}
	if a := n.Addr(); a != nil {
		s.Listen = a.String()
	}
	if n.opts.Bootstrap {
		s.Bootstrap = n.boot.state()
	}
	n.peersMu.Lock()
	for _, p := range n.peers {
		s.Peers = append(s.Peers, p.state())
	}
	for a := range n.self {
		s.Self = append(s.Self, a)
	}
	n.peersMu.Unlock()
	slices.SortFunc(s.Peers, func(a, b peerState) int { return strings.Compare(a.Addr, b.Addr) })
	slices.Sort(s.Self)
	return s
}

func (p *peer) state() peerState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return peerState{
		Addr: p.addr, ID: p.remoteID, Sent: p.sent.Load(), Dropped: p.dropped.Load(), Failed: p.failed.Load(),
		SentDispatches: p.sentDisp.Load(), DroppedDispatches: p.droppedDisp.Load(),
		QueuedBytes: p.queued, Failing: p.failing, LastError: p.lastErr,
	}
}
