package filters

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// HeaderBasedTestingType is the type name of HeaderBasedTesting.
const HeaderBasedTestingType = "header-based-testing-filter"

// EndpointSelectionHeader is the request header (lower case) naming the
// endpoints a test wants, as a comma-separated list of IPs or ip:port pairs.
const EndpointSelectionHeader = "test-epp-endpoint-selection"

// HeaderBasedTestingParams is empty: the filter takes no parameters, and
// strict decoding rejects any given.
type HeaderBasedTestingParams struct{}

func (p *HeaderBasedTestingParams) validate() error { return nil }

// HeaderBasedTesting lets a test steer routing: it keeps the endpoints listed
// in the test-epp-endpoint-selection request header. The upstream conformance
// suite schedules with it, so it must behave like upstream's filter whenever
// the header is present. It is for tests only: any client that can set the
// header chooses its endpoint.
//
// Inputs: the request header and endpoint addresses. No parameters. Rule: the
// header is split on commas and each item trimmed of spaces; an item without
// a port ("10.0.0.1", "::1" or "[::1]") keeps the endpoint with that IP on any
// port, an item with a port ("10.0.0.1:8000", "[::1]:8000") keeps only the
// endpoint with exactly that ip:port. Endpoints stay in input order. When the
// header lists no endpoint of the pool the result is empty, so the request
// fails naming this filter.
//
// Missing header: upstream's filter (GIE conformance/testing-epp, per its
// public review threads, PRs #922, #964 and #1769) builds its result from the
// header alone, so a request without the header gets no endpoint and fails.
// This filter keeps all endpoints instead when the header is absent, empty,
// or lists only blanks, so that a profile using it still serves ordinary
// traffic; requests that carry the header, which is all the conformance
// suite sends, behave as upstream.
type HeaderBasedTesting struct {
	name scheduler.TypedName
}

var _ scheduler.Filter = (*HeaderBasedTesting)(nil)

// NewHeaderBasedTesting returns the filter.
func NewHeaderBasedTesting(name string, _ HeaderBasedTestingParams) *HeaderBasedTesting {
	return &HeaderBasedTesting{name: scheduler.TypedName{Type: HeaderBasedTestingType, Name: name}}
}

// HeaderBasedTestingFactory builds a HeaderBasedTesting from config.
func HeaderBasedTestingFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	var p HeaderBasedTestingParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	return NewHeaderBasedTesting(name, p), nil
}

// HeaderBasedTestingRegistration describes the plugin type for the registry.
func HeaderBasedTestingRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    HeaderBasedTestingType,
		Factory: HeaderBasedTestingFactory,
		Params:  HeaderBasedTestingParams{},
		Summary: "Test only: keeps the endpoints (IP or ip:port) listed in the test-epp-endpoint-selection header.",
	}
}

// TypedName implements scheduler.Plugin.
func (f *HeaderBasedTesting) TypedName() scheduler.TypedName { return f.name }

// Filter implements scheduler.Filter. It scans the header once per endpoint
// rather than building a set, which keeps it allocation-free for the short
// lists tests send.
func (f *HeaderBasedTesting) Filter(_ context.Context, _ *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) []*endpoint.Endpoint {
	if req == nil {
		return eps
	}
	list := req.Header(EndpointSelectionHeader)
	if strings.Trim(list, ", \t") == "" {
		return eps
	}
	return keep(eps, func(e *endpoint.Endpoint) bool { return listed(list, e) })
}

// listed reports whether any item of the comma-separated list names e.
func listed(list string, e *endpoint.Endpoint) bool {
	for list != "" {
		var item string
		item, list, _ = strings.Cut(list, ",")
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if item == e.Address || item == e.HostPort {
			return true
		}
		if len(item) > 2 && item[0] == '[' && item[len(item)-1] == ']' && item[1:len(item)-1] == e.Address {
			return true
		}
	}
	return false
}
