package disagg

import (
	"context"
	"strings"
	"testing"

	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

func TestHeadersParams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, typ, params string
		wantRequired      []string
		wantErr           string
	}{
		{name: "defaults, nothing required", typ: HeadersType, params: ``},
		{name: "explicit names required", typ: HeadersType, params: `{"prefillProfile":"p","encodeProfile":"e"}`, wantRequired: []string{"p", "e"}},
		{name: "explicit default name required too", typ: PrefillHeaderType, params: `{"prefillProfile":"prefill"}`, wantRequired: []string{"prefill"}},
		{name: "unknown parameter", typ: HeadersType, params: `{"prefillProfileName":"p"}`, wantErr: `unknown field "prefillProfileName"`},
		{name: "wrong type", typ: PrefillHeaderType, params: `{"encodeProfile":3}`, wantErr: "parameters:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			factory := HeadersFactory
			if tc.typ == PrefillHeaderType {
				factory = PrefillHeaderFactory
			}
			p, err := factory("h", []byte(tc.params), nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			h := p.(*Headers)
			if got := h.TypedName(); got != (scheduler.TypedName{Type: tc.typ, Name: "h"}) {
				t.Errorf("typed name %v", got)
			}
			if d := cmp.Diff(tc.wantRequired, h.RequiredProfiles()); d != "" {
				t.Errorf("required profiles (-want +got)\n%s", d)
			}
		})
	}
}

// TestHeadersLogsDeprecation: building the plugin says, once, that it is
// deprecated and what does its job.
func TestHeadersLogsDeprecation(t *testing.T) {
	t.Parallel()
	var lines []string
	log := funcr.New(func(prefix, args string) { lines = append(lines, args) }, funcr.Options{})
	if _, err := PrefillHeaderFactory("old", nil, &scheduler.Handle{Log: log}); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "prefill-header-handler is deprecated") ||
		!strings.Contains(lines[0], "disagg-profile-handler") {
		t.Errorf("log lines %q, want one deprecation warning naming disagg-profile-handler", lines)
	}
}

func TestHeadersPreRequest(t *testing.T) {
	t.Parallel()
	eps := plugintest.Endpoints(4, 1) // 10.0.0.1..4:8000
	result := func(primary string, picks map[string][]*endpoint.Endpoint) *scheduler.Result {
		r := &scheduler.Result{Primary: primary, Profiles: map[string]*scheduler.ProfileResult{}}
		for name, targets := range picks {
			r.Profiles[name] = &scheduler.ProfileResult{Targets: targets}
		}
		return r
	}
	const prefill, encoders = PrefillerHeader, EncodersHeader
	tests := []struct {
		name        string
		params      HeadersParams
		result      *scheduler.Result
		byHandler   bool // a disagg Handler scheduled the request
		wantHeaders map[string]string
		wantRemoved []string
	}{
		{name: "another handler ran prefill and encode", result: result("decode", map[string][]*endpoint.Endpoint{
			"decode": {eps[0]}, "prefill": {eps[1], eps[3]}, "encode": {eps[2], eps[3]}}),
			wantHeaders: map[string]string{prefill: "10.0.0.2:8000", encoders: "10.0.0.3:8000,10.0.0.4:8000"}},
		{name: "decode only: client-sent headers stripped", result: result("decode", map[string][]*endpoint.Endpoint{"decode": {eps[0]}}),
			wantRemoved: []string{prefill, encoders}},
		{name: "custom profile names", params: HeadersParams{PrefillProfile: "p", EncodeProfile: "e"},
			result:      result("d", map[string][]*endpoint.Endpoint{"d": {eps[0]}, "p": {eps[1]}, "prefill": {eps[2]}}),
			wantHeaders: map[string]string{prefill: "10.0.0.2:8000"}, wantRemoved: []string{encoders}},
		{name: "the prefill profile is the destination: no prefiller", result: result("prefill", map[string][]*endpoint.Endpoint{"prefill": {eps[1]}}),
			wantRemoved: []string{prefill, encoders}},
		{name: "a disagg handler scheduled it: untouched", byHandler: true, result: result("decode", map[string][]*endpoint.Endpoint{
			"decode": {eps[0]}, "prefill": {eps[1]}})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := NewHeaders(HeadersType, "h", tc.params)
			st := plugintest.State(1)
			if tc.byHandler {
				planKey.Set(st, &plan{})
			}
			h.PreRequest(context.Background(), st, plugintest.Request("m", 10), tc.result)
			if d := cmp.Diff(tc.wantHeaders, tc.result.Headers); d != "" {
				t.Errorf("headers (-want +got)\n%s", d)
			}
			if d := cmp.Diff(tc.wantRemoved, tc.result.RemovedHeaders); d != "" {
				t.Errorf("removed headers (-want +got)\n%s", d)
			}
		})
	}
	// No result or no state: nothing to do, no panic.
	NewHeaders(HeadersType, "h", HeadersParams{}).PreRequest(context.Background(), nil, nil, nil)
	r := result("decode", map[string][]*endpoint.Endpoint{"decode": {eps[0]}, "prefill": {eps[1]}})
	NewHeaders(HeadersType, "h", HeadersParams{}).PreRequest(context.Background(), nil, nil, r)
	if r.Headers[prefill] != "10.0.0.2:8000" {
		t.Errorf("nil state: headers %v", r.Headers)
	}
}
