package flowcontrol

import (
	"fmt"
	"strconv"
	"time"
)

// Outcome is how one Admit call ended.
type Outcome int

const (
	// Dispatched: the request may be scheduled now (fast path or released
	// from its queue).
	Dispatched Outcome = iota
	// RejectedCapacity: queueing it would have exceeded a global or band
	// limit on waiting requests or bytes.
	RejectedCapacity
	// EvictedTTL: it waited longer than Config.DefaultTTL.
	EvictedTTL
	// EvictedContextCancelled: its context was cancelled or passed its
	// deadline, before or while it waited.
	EvictedContextCancelled
	// EvictedNoEndpoints: it waited longer than Config.NoEndpointTTL while
	// the pool had no endpoints.
	EvictedNoEndpoints
	// RejectedShuttingDown: the controller was stopped.
	RejectedShuttingDown
	// RejectedNoEndpoints: a limit refused it while the pool had no
	// endpoints, so the pool is unavailable rather than busy (llm-d's
	// outcome; the EPP answers 503 instead of 429).
	RejectedNoEndpoints
)

var outcomeNames = [...]string{
	Dispatched:              "Dispatched",
	RejectedCapacity:        "RejectedCapacity",
	EvictedTTL:              "EvictedTTL",
	EvictedContextCancelled: "EvictedContextCancelled",
	EvictedNoEndpoints:      "EvictedNoEndpoints",
	RejectedShuttingDown:    "RejectedShuttingDown",
	RejectedNoEndpoints:     "RejectedNoEndpoints",
}

func (o Outcome) String() string {
	if o >= 0 && int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Error is returned by Admit for every refusal; Outcome says why.
type Error struct {
	Outcome Outcome
	// NoEndpoints reports that the pool had no endpoints when the request
	// was refused (servers answer 503 rather than 429 then).
	NoEndpoints bool
	msg         string
	// cause is the context's cause for EvictedContextCancelled.
	cause error
}

func (e *Error) Error() string { return e.msg }

// Unwrap returns the context's cause for EvictedContextCancelled (so
// errors.Is(err, context.DeadlineExceeded) works) and nil otherwise.
func (e *Error) Unwrap() error { return e.cause }

// Observer is told what happens to requests, typically to keep metrics. Its
// methods are called synchronously: they must be quick, safe for concurrent
// use, and must not call the Controller.
type Observer interface {
	// Finished is called once per Admit call, with how long the request
	// waited (0 on the fast path and for immediate refusals).
	Finished(r Request, outcome Outcome, waited time.Duration)
	// Depth is called, with the controller's lock held, after every change
	// to a flow's queue: the number and bytes of requests now waiting in
	// (flowID, priority). A flow that empties reports 0 once.
	Depth(flowID string, priority int, requests int, bytes int64)
}

// The refusal messages name the flow and priority, and the limit or TTL
// that applied, so that a log line or a 429 body explains itself.

func capacityError(scope string, queued, limit int64, unit string, r Request) *Error {
	var msg string
	if unit == "requests" {
		msg = fmt.Sprintf("flow control: %s is full (%d requests queued, maxRequests %d); request of flow %q (priority %d) refused",
			scope, queued, limit, r.FlowID, r.Priority)
	} else {
		msg = fmt.Sprintf("flow control: %s is full (%d bytes queued plus %d in this request would exceed maxBytes %d); request of flow %q (priority %d) refused",
			scope, queued, r.Bytes, limit, r.FlowID, r.Priority)
	}
	return &Error{Outcome: RejectedCapacity, msg: msg}
}

func ttlError(flowID string, priority int, waited, ttl time.Duration, noEndpointTTL bool) *Error {
	if noEndpointTTL {
		return &Error{Outcome: EvictedNoEndpoints, NoEndpoints: true, msg: fmt.Sprintf(
			"flow control: request of flow %q (priority %d) evicted after waiting %s with no endpoints in the pool (noEndpointTTL %s)",
			flowID, priority, waited, ttl)}
	}
	return &Error{Outcome: EvictedTTL, msg: fmt.Sprintf(
		"flow control: request of flow %q (priority %d) evicted after waiting %s (defaultTTL %s)",
		flowID, priority, waited, ttl)}
}

func cancelledError(r Request, queued bool, waited time.Duration, cause error) *Error {
	var msg string
	if !queued {
		msg = fmt.Sprintf("flow control: request of flow %q (priority %d) was already cancelled when it arrived: %v",
			r.FlowID, r.Priority, cause)
	} else {
		msg = fmt.Sprintf("flow control: request of flow %q (priority %d) cancelled after waiting %s: %v",
			r.FlowID, r.Priority, waited, cause)
	}
	return &Error{Outcome: EvictedContextCancelled, msg: msg, cause: cause}
}

func shutdownError(flowID string, priority int, queued bool, waited time.Duration) *Error {
	if !queued {
		return &Error{Outcome: RejectedShuttingDown, msg: fmt.Sprintf(
			"flow control: shutting down; request of flow %q (priority %d) refused", flowID, priority)}
	}
	return &Error{Outcome: RejectedShuttingDown, msg: fmt.Sprintf(
		"flow control: shutting down; request of flow %q (priority %d) dropped after waiting %s", flowID, priority, waited)}
}

func bandName(priority int) string { return "band " + strconv.Itoa(priority) }
