package server

import (
	"slices"
	"testing"

	"github.com/openepp/openepp/pkg/endpoint"
)

// TestHeadersAnswerOrder checks that the headers of a routing answer come
// in a fixed order, so the same decision is always the same message.
func TestHeadersAnswerOrder(t *testing.T) {
	t.Parallel()
	ep := endpoint.New(endpoint.Spec{Name: "a", Address: "10.0.0.1", Port: 8000})
	a := answer{targets: []*endpoint.Endpoint{ep}, requestID: "id",
		headers: map[string]string{"x-b": "2", "x-a": "1", "x-c": "3"},
		trace:   map[string]string{"tracestate": "s", "traceparent": "p", "baggage": "b"}}
	want := []string{DestinationHeader, RequestIDHeader, "x-a", "x-b", "x-c", "baggage", "traceparent", "tracestate"}
	for range 20 {
		var got []string
		for _, h := range headersAnswer(a).GetRequestHeaders().GetResponse().GetHeaderMutation().GetSetHeaders() {
			got = append(got, h.GetHeader().GetKey())
		}
		if !slices.Equal(got, want) {
			t.Fatalf("header order %v, want %v", got, want)
		}
	}
}
