package server

import (
	"context"

	"github.com/openepp/openepp/pkg/scheduler"
)

// Admission holds a request until the pool may take it (flow control).
// The server calls Admit once per request with a body, after the request
// is parsed and its priority and fairness key are known and before the
// candidates are looked up, so scheduling happens at release time and sees
// the pool as it is then. Admit blocks; it returns the request's pass when
// the request may be scheduled and an error when it must not (a *Refusal
// chooses the answer; any other error is a 500). ctx ends when the proxy
// abandons the stream.
type Admission interface {
	Admit(ctx context.Context, req *scheduler.Request, bodyBytes int) (Admitted, error)
}

// Admitted is one request's pass through admission. The server calls
// Scheduled once the request has been scheduled (its PreRequest hooks have
// run, so load-counting detectors see it) or has failed to be, and
// Released once it finishes, however it ends.
type Admitted interface {
	Scheduled()
	Released()
}

// Refusal is an admission refusal carrying the HTTP status and the
// machine-readable reason (x-gateway-request-dropped-reason) the proxy
// answers with.
type Refusal struct {
	Code   int
	Reason string
	Err    error
}

func (r *Refusal) Error() string { return r.Err.Error() }

func (r *Refusal) Unwrap() error { return r.Err }

// admit passes the request being scheduled through adm.
func (x *exchange) admit(adm Admission) error {
	start := x.srv.now()
	pass, err := adm.Admit(x.ctx, x.req, len(x.body))
	x.req.QueueWait = x.srv.now().Sub(start)
	x.traceAdmission(x.req.QueueWait)
	if err != nil {
		return err
	}
	x.admission = pass
	return nil
}

// released tells the admission that let this request in that it is done.
func (x *exchange) released() {
	if x.admission != nil {
		x.admission.Released()
		x.admission = nil
	}
}
