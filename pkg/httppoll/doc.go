// Package httppoll is what the data-layer sources that poll a pool's
// servers over HTTP share (models-data-source, dcgm-data-source), so that
// each keeps only what is its own: what URL it polls, how it parses the
// answer and what it hands its extractors.
//
// Shared are the transport (servers reached directly, never through
// $HTTP_PROXY; TLS as certfile.ClientParams say), the bounded GET that
// names a failure by fetchfail reason, the interval and timeout parameters,
// the schedule that polls every target on a goroutine of its own every
// interval, and the poll counters with their llm-d alias.
package httppoll
