package server

import (
	"errors"
	"net/http"

	"github.com/openepp/openepp/pkg/request"
)

// Revocable is an admission pass whose request flow control may end after
// it was sent to a model server (llm-d's in-flight eviction). The server
// hands it, once the request is scheduled, the function that ends it;
// revoke never blocks and may be called from any goroutine, at most once.
type Revocable interface {
	Dispatched(revoke func())
}

// EvictedReason is the dropped reason of an evicted request (llm-d's).
const EvictedReason = "evicted"

// errEvicted ends the exchange's own work once an eviction answered.
var errEvicted = errors.New("request evicted by flow control")

// offerRevocation gives the request's pass the means to evict it.
func (x *exchange) offerRevocation() {
	r, ok := x.admission.(Revocable)
	if !ok {
		return
	}
	anthropic := request.APIForPath(x.path()).IsAnthropic()
	r.Dispatched(func() { go x.evict(anthropic) })
}

// evict answers the proxy with an immediate response: Envoy then resets
// the upstream request (the engine aborts it and frees its KV cache) and
// sends the client the 429, or resets the client's stream when the
// response has started. It runs on its own goroutine; the exchange's
// goroutine stops at its next message or send.
func (x *exchange) evict(anthropic bool) {
	x.sendMu.Lock()
	defer x.sendMu.Unlock()
	if x.over || x.evicted.Load() {
		return
	}
	x.evicted.Store(true)
	_ = x.stream.Send(immediateResponse(http.StatusTooManyRequests, EvictedReason,
		"request evicted by flow control to free capacity for higher-priority requests; retry later", anthropic))
}
