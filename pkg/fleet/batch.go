package fleet

import (
	"strconv"
	"time"

	"github.com/openepp/openepp/pkg/scheduler"
)

// Batching windows in virtual time (burst-prefix-cache-producer): live, a
// scheduler.Batcher's Produce waits for its window's other requests. Here
// a request a batching config routes is held from its dispatch until its
// window closes (the window opens with the first request held), then the
// window's requests are planned together (PlanBatch, in dispatch order)
// and routed one after another, their Produce calls answering at once.

// batcher is a router whose configs hold a scheduler.Batcher.
type batcher interface {
	// batchWindow is how long f waits for others; 0: it does not.
	batchWindow(f *flight) time.Duration
	// planBatch places the flights of one window, all of one replica.
	planBatch(fs []*flight)
}

// requestOf is the request a batcher plans for f; its ID is the one route
// gives f's request, so Produce finds the plan.
func requestOf(f *flight) *scheduler.Request {
	return &scheduler.Request{ID: strconv.FormatUint(f.id, 10), Model: f.p.body.Model, Body: f.p.body}
}

func (r *schedRouter) batchWindow(*flight) time.Duration { return r.window }

func (r *schedRouter) planBatch(fs []*flight) {
	reqs := make([]*scheduler.Request, len(fs))
	for i, f := range fs {
		reqs[i] = requestOf(f)
	}
	for _, b := range r.batchers {
		b.PlanBatch(reqs, r.eps)
	}
}

func (r *replicated) batchWindow(f *flight) time.Duration {
	if b, ok := r.replicas[f.replica].(batcher); ok {
		return b.batchWindow(f)
	}
	return 0
}

func (r *replicated) planBatch(fs []*flight) {
	if b, ok := r.replicas[fs[0].replica].(batcher); ok {
		b.planBatch(fs)
	}
}

// heldBatch is one replica's open window.
type heldBatch struct {
	ids []uint64
}

// hold keeps f for its replica's window, opening one (and its closing
// event) when none is open; false when f's router does not batch.
func (s *sim) hold(f *flight) bool {
	b, ok := s.router.(batcher)
	if !ok || f.batched {
		return false
	}
	w := b.batchWindow(f)
	if w <= 0 {
		return false
	}
	if s.batches == nil {
		s.batches = map[uint8]*heldBatch{}
	}
	hb := s.batches[f.replica]
	if hb == nil {
		hb = &heldBatch{}
		s.batches[f.replica] = hb
		s.events.push(event{at: s.now() + w, kind: evBatch, server: int32(f.replica)})
	}
	hb.ids = append(hb.ids, f.id)
	f.status = flightBatched
	return true
}

// closeBatch plans and routes replica k's window.
func (s *sim) closeBatch(k uint8) {
	hb := s.batches[k]
	delete(s.batches, k)
	if hb == nil {
		return
	}
	var fs []*flight
	for _, id := range hb.ids {
		if f := &s.flights[id]; f.status == flightBatched {
			fs = append(fs, f)
		}
	}
	if len(fs) == 0 {
		return
	}
	s.router.(batcher).planBatch(fs)
	for _, f := range fs {
		f.batched, f.status = true, flightRunning
		s.dispatch(f)
	}
}
