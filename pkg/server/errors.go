package server

import (
	"errors"
	"net/http"

	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
)

// Conditions found by the server itself.
var (
	errBodyTooLarge   = errors.New("request body too large")
	errEmptyBody      = errors.New("request body is empty")
	errNoEndpoints    = errors.New("no ready endpoints in the pool")
	errEmptySubset    = errors.New("the proxy's endpoint subset hint is empty")
	errSubsetMismatch = errors.New("no endpoint of the pool is in the proxy's subset hint")
	errNotReady       = errors.New("endpoint picker has not synced its endpoints yet")
)

// statusFor is the one place where errors from anywhere in the request path
// become the HTTP status Envoy returns, plus a short machine-readable reason.
func statusFor(err error) (int, string) {
	if r := (*Refusal)(nil); errors.As(err, &r) {
		return r.Code, r.Reason
	}
	if code, reason, ok := poolStatus(err); ok {
		return code, reason
	}
	switch {
	case errors.Is(err, errBodyTooLarge):
		return http.StatusRequestEntityTooLarge, "body-too-large"
	case errors.Is(err, errEmptyBody), errors.Is(err, request.ErrMalformed),
		errors.Is(err, request.ErrMissingModel), errors.Is(err, request.ErrMissingPrompt),
		errors.Is(err, scheduler.ErrInvalidRequest):
		return http.StatusBadRequest, "bad-request"
	case errors.Is(err, scheduler.ErrRejected):
		return http.StatusTooManyRequests, "rejected-saturated"
	case errors.Is(err, errNotReady), errors.Is(err, errNoEndpoints), errors.Is(err, errEmptySubset),
		errors.Is(err, errSubsetMismatch), errors.Is(err, scheduler.ErrNoCandidates):
		return http.StatusServiceUnavailable, "rejected-no-endpoints"
	default:
		return http.StatusInternalServerError, "internal-error"
	}
}
