package scheduler

import "time"

// The flow-control extension points. With the flowControl feature gate on,
// the EPP holds requests while the pool is saturated and releases them band
// by band (strict priority), choosing a flow within a band with the band's
// FairnessPolicy and a request within a flow with its OrderingPolicy. The
// queues themselves live in pkg/flowcontrol; the interfaces live here so
// that configuration can check plugin kinds without importing it.

// QueuedRequest is what flow-control policies see of a waiting request.
// Policies must treat it as read-only.
type QueuedRequest struct {
	// FlowID is the fairness key (x-gateway-inference-fairness-id).
	FlowID string
	// Priority is the request's priority band.
	Priority int
	// Bytes is the request body's size.
	Bytes int64
	// Enqueued is when the request started waiting.
	Enqueued time.Time
	// Deadline is when the request stops waiting (the band's TTL or the
	// client's deadline, whichever is first); zero when neither applies.
	Deadline time.Time
	// SLODeadline is Enqueued plus the request's TTFT objective
	// (x-slo-ttft-ms) when it has one; zero otherwise.
	SLODeadline time.Time
	// Seq orders requests by arrival; policies use it to break ties.
	Seq uint64
}

// OrderingPolicy orders the waiting requests of one flow: Less reports
// whether a should be dispatched before b. It must be a strict weak order
// and is called under the queue's lock, so it must be quick and not block.
type OrderingPolicy interface {
	Plugin
	Less(a, b *QueuedRequest) bool
}

// FairnessPolicy decides which flow of a priority band dispatches next.
// NewChooser is called once per band; the chooser it returns may keep state
// (for example whose turn it is) and is only ever used by one goroutine.
type FairnessPolicy interface {
	Plugin
	NewChooser() FlowChooser
}

// FlowChooser picks among the flows of one band that have waiting requests.
// heads holds each such flow's next request (as its ordering policy ranks
// them), in a stable order (flows in order of creation); Choose returns an
// index into heads.
type FlowChooser interface {
	Choose(heads []*QueuedRequest, order OrderingPolicy) int
}

// UsageLimitPolicy caps how saturated the pool may be while a band
// dispatches: a request of the given priority leaves its queue only while
// the saturation detector rates the pool below Ceiling(priority).
type UsageLimitPolicy interface {
	Plugin
	Ceiling(priority int) float64
}

// BandedUsageLimitPolicy is a UsageLimitPolicy whose ceilings depend on the
// pool's saturation and on which priorities are in use (llm-d's
// priority-holdback and soft-reflective-ceiling policies); flow control
// asks CeilingAmong instead of Ceiling.
type BandedUsageLimitPolicy interface {
	UsageLimitPolicy
	// CeilingAmong returns priority's ceiling given the saturation now and
	// the active priorities, highest first, priority among them.
	CeilingAmong(priority int, saturation float64, active []int) float64
}
