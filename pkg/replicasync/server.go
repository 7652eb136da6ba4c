package replicasync

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/openepp/openepp/pkg/prefix"
)

// decoder is one request's reusable buffers.
type decoder struct {
	body bytes.Buffer
	decoded
}

// receiveStats are the receiving side's totals, for State.
type receiveStats struct {
	received, applied, unknown, noProducer atomic.Uint64
	badToken, tooLarge, malformed, version atomic.Uint64
	disp                                   dispatchTotals
}

func (n *Node) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(batchesPath, n.serveBatch)
	mux.HandleFunc(snapshotPath, n.serveSnapshot)
	return mux
}

// openPeerRequest starts every answer to a peer: it names this replica
// (so a node that reached itself can tell) and refuses any method but
// method, saying what to do instead (false: answered). It returns what is
// wrong with the bearer token, "" when it is right; each handler answers
// that its own way.
func (n *Node) openPeerRequest(w http.ResponseWriter, r *http.Request, method, instead string) (tokenProblem string, ok bool) {
	w.Header().Set(headerReplicaID, n.opts.ID)
	if r.Method != method {
		w.Header().Set("Allow", method)
		http.Error(w, "method not allowed: "+instead, http.StatusMethodNotAllowed)
		return "", false
	}
	return n.checkToken(r.Header.Get("Authorization")), true
}

// serveBatch takes one batch from a peer and applies it.
func (n *Node) serveBatch(w http.ResponseWriter, r *http.Request) {
	msg, ok := n.openPeerRequest(w, r, http.MethodPost, "send batches with POST")
	if !ok {
		return
	}
	if msg != "" {
		n.reject(w, rejectBadToken, http.StatusUnauthorized, msg)
		return
	}
	limit := int64(n.opts.MaxBatchBytes)
	if r.ContentLength > limit {
		n.reject(w, rejectTooLarge, http.StatusRequestEntityTooLarge, "batch larger than this replica's maxBatchBytes")
		return
	}
	d := n.decoders.Get().(*decoder)
	defer n.decoders.Put(d)
	d.body.Reset()
	if r.ContentLength > 0 {
		d.body.Grow(int(r.ContentLength) + bytes.MinRead) // ReadFrom wants MinRead free to stop at EOF
	}
	if _, err := d.body.ReadFrom(http.MaxBytesReader(w, r.Body, limit)); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			n.reject(w, rejectTooLarge, http.StatusRequestEntityTooLarge, "batch larger than this replica's maxBatchBytes")
			return
		}
		n.reject(w, rejectMalformed, http.StatusBadRequest, "reading batch: "+err.Error())
		return
	}
	if err := d.decode(d.body.Bytes()); err != nil {
		reason := rejectMalformed
		if errors.Is(err, errVersion) {
			reason = rejectVersion
		}
		n.reject(w, reason, http.StatusBadRequest, "malformed batch: "+err.Error())
		return
	}
	if d.sender == n.opts.ID {
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "ignored: batch from this replica's own ID\n")
		return
	}
	n.apply(d.insertions)
	n.applyDispatches(d.dispatches)
	w.WriteHeader(http.StatusNoContent)
}

// checkToken returns why auth is refused, "" when it is not.
func (n *Node) checkToken(auth string) string {
	if n.opts.Token == nil {
		return ""
	}
	if auth == "" {
		return "missing token: send Authorization: Bearer <token>"
	}
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	// Comparing digests keeps the time independent of the token's length.
	got := sha256.Sum256([]byte(tok))
	if !ok || subtle.ConstantTimeCompare(got[:], n.tokenHash[:]) != 1 {
		return "wrong token: the bearer token does not match this replica's"
	}
	return ""
}

func (n *Node) reject(w http.ResponseWriter, reason string, code int, msg string) {
	n.m.reject(reason)
	switch reason {
	case rejectBadToken:
		n.recv.badToken.Add(1)
	case rejectTooLarge:
		n.recv.tooLarge.Add(1)
	case rejectVersion:
		n.recv.version.Add(1)
	default:
		n.recv.malformed.Add(1)
	}
	if reason != rejectBadToken {
		n.log.V(1).Info("refused a replica batch", "reason", reason, "err", msg)
	}
	http.Error(w, msg, code)
}

// apply hands a received batch's insertions to their producers and counts
// them.
func (n *Node) apply(ins []prefix.Insertion) {
	applied, unknown, none := applyAll(n.lookup(), ins)
	n.recv.received.Add(uint64(len(ins)))
	n.recv.applied.Add(uint64(applied))
	n.recv.unknown.Add(uint64(unknown))
	n.recv.noProducer.Add(uint64(none))
	n.m.receivedBatch(len(ins), applied, unknown, none)
}

// applyAll hands the insertions to their producers, one call per producer
// name; order within a producer is kept (it is the LRU order). It returns
// how many were applied, named an unknown endpoint, or named no producer
// (lookup nil, or answering nil).
func applyAll(lookup func(string) prefix.Sharer, ins []prefix.Insertion) (applied, unknown, none int) {
	if !slices.IsSortedFunc(ins, byProducer) {
		slices.SortStableFunc(ins, byProducer)
	}
	for i := 0; i < len(ins); {
		j := i + 1
		for j < len(ins) && ins[j].Producer == ins[i].Producer {
			j++
		}
		var p prefix.Sharer
		if lookup != nil {
			p = lookup(ins[i].Producer)
		}
		if p == nil {
			none += j - i
		} else {
			a, u := p.ApplyRemote(ins[i:j])
			applied, unknown = applied+a, unknown+u
		}
		i = j
	}
	return applied, unknown, none
}

func byProducer(a, b prefix.Insertion) int { return strings.Compare(a.Producer, b.Producer) }
