package scorers

import (
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// servedEndpoint returns the endpoint at hostPort, the address the proxy
// reports having used: among the request's targets first, else in the pool
// (a retry may have gone beyond them; h may be nil); nil when neither holds
// it.
func servedEndpoint(h *scheduler.Handle, targets []*endpoint.Endpoint, hostPort string) *endpoint.Endpoint {
	for _, e := range targets {
		if e.HostPort == hostPort {
			return e
		}
	}
	if h != nil && h.Endpoints != nil {
		for _, e := range h.Endpoints() {
			if e.HostPort == hostPort {
				return e
			}
		}
	}
	return nil
}
