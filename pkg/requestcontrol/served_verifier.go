package requestcontrol

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/openepp/openepp/pkg/scheduler"
)

// ServedVerifierType is the type name of ServedVerifier.
const ServedVerifierType = "destination-endpoint-served-verifier"

// ServedTestHeader is the response header ServedVerifier writes, the one
// the GIE conformance suite reads.
const ServedTestHeader = "x-conformance-test-served-endpoint"

// ServedMissing is ServedVerifier's answer when the proxy reported no
// served endpoint.
const ServedMissing = "fail: missing destination endpoint served metadata"

// ServedVerifierParams is empty: the plugin takes no parameters.
type ServedVerifierParams struct{}

// ServedVerifier is GIE's test-only destination-endpoint-served-verifier:
// on every response it writes the endpoint the proxy reports having served
// the request (x-gateway-destination-endpoint-served in the envoy.lb
// metadata) into the x-conformance-test-served-endpoint response header, or
// ServedMissing when the proxy reported none, so a conformance test can
// check that its request went where the EPP sent it. It is for tests: it
// tells every client which pod served it.
type ServedVerifier struct {
	name scheduler.TypedName
}

var _ scheduler.ResponseHeaders = (*ServedVerifier)(nil)

// ServedVerifierFactory builds a ServedVerifier from config.
func ServedVerifierFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	var p ServedVerifierParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	return &ServedVerifier{name: scheduler.TypedName{Type: ServedVerifierType, Name: name}}, nil
}

// ServedVerifierRegistration describes the plugin type for the registry.
func ServedVerifierRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    ServedVerifierType,
		Factory: ServedVerifierFactory,
		Params:  ServedVerifierParams{},
		Summary: "Test only: writes the endpoint the proxy reports having served the request into the x-conformance-test-served-endpoint response header.",
	}
}

// TypedName implements scheduler.Plugin.
func (v *ServedVerifier) TypedName() scheduler.TypedName { return v.name }

// ResponseHeaders writes the served endpoint into the test header.
func (v *ServedVerifier) ResponseHeaders(_ context.Context, _ *scheduler.State, _ *scheduler.Request, resp *scheduler.Response) {
	served := strings.TrimSpace(resp.Served)
	if served == "" {
		served = ServedMissing
	}
	resp.SetHeader(ServedTestHeader, served)
}
