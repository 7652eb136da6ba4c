// Package eviction ends requests already sent to a model server so that
// higher-priority requests waiting in flow control can go: llm-d's
// in-flight eviction (flowControl.enableEviction).
//
// Dispatch grants a request a lease on pool capacity that it holds until
// it ends. Without revocation, a burst of critical traffic that finds the
// pool full of sheddable (priority < 0) requests waits for them to finish
// on their own, however long their outputs are. Eviction bounds that wait
// by the time a revocation takes to reach the engine.
//
// Three parts:
//   - Tracker holds every lease from dispatch until its stream ends, and the
//     revocable ones (Filter) in the order they would be revoked (Ordering).
//   - A lease's revoke function is the actuator: the server answers the
//     request's ext_proc stream with an immediate response (429, reason
//     "evicted"), the proxy resets the upstream and the engine aborts.
//   - Reclaimer decides when and how many: it acts only when flow control
//     is blocked (head-of-line) with queued demand of strictly higher
//     priority than the next victim, sizes the revocations from the
//     saturation deficit against the mean lease footprint, and, because the
//     saturation signal lags, never acts again until every revocation it
//     issued is confirmed (its stream ended) and a grace has passed for the
//     detector to see the freed capacity.
//
// The design follows llm-d's (docs/flow-control-eviction.md in
// llm-d-router): same trigger, sizing, pacing, defaults and metrics.
package eviction
