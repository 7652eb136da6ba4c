package scorers

import (
	"encoding/base64"
	"reflect"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// filterTrip sends one request through Filter → PreRequest(result) →
// ResponseHeaders and returns the candidates left and the response.
func filterTrip(f *SessionAffinityFilter, eps []*endpoint.Endpoint, headers map[string]string, result *scheduler.Result) ([]*endpoint.Endpoint, *scheduler.Response) {
	st, req := scState(), scRequest(50, headers)
	kept := f.Filter(scCtx, st, req, eps)
	f.PreRequest(scCtx, st, req, result)
	resp := &scheduler.Response{StatusCode: 200}
	f.ResponseHeaders(scCtx, st, req, resp)
	return kept, resp
}

// addrs names endpoints by address, for comparisons and messages.
func addrs(eps ...*endpoint.Endpoint) []string {
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e.HostPort
	}
	return out
}

func TestSessionAffinityFilterRegistration(t *testing.T) {
	t.Parallel()
	reg := SessionAffinityFilterRegistration()
	p, err := reg.Factory("pin", nil, scHandle(newSCClock(), nil))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(scheduler.TypedName{Type: SessionAffinityFilterType, Name: "pin"}, p.TypedName()); diff != "" {
		t.Errorf("TypedName (-want +got):\n%s", diff)
	}
	if _, ok := p.(scheduler.Scorer); ok {
		t.Errorf("%T is also a Scorer: a profile would weigh it", p)
	}
	if _, err := reg.Factory("x", defaultsJSON(t, reflect.TypeOf(reg.Params)), nil); err != nil {
		t.Errorf("documented defaults rejected: %v", err)
	}
	p, err = reg.Factory("x", []byte(`{"strategy":"sticky"}`), nil)
	if err == nil || p != nil {
		t.Errorf("unknown strategy: plugin %v, err %v; want a nil plugin and an error", p, err)
	}
}

// TestSessionAffinityFilterToken: the filter hands out the token as the
// scorer does and, given it back, keeps only the session's endpoint; any
// token it cannot place lets every candidate through.
func TestSessionAffinityFilterToken(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(4, nil)
	f := mustBuild[*SessionAffinityFilter](t, SessionAffinityFilterRegistration(), "", nil)

	kept, resp := filterTrip(f, eps, nil, scResult(eps[2]))
	if len(kept) != len(eps) {
		t.Errorf("without a session %d of %d candidates kept", len(kept), len(eps))
	}
	tok := resp.AddHeaders["x-session-token"]
	if want := base64.StdEncoding.EncodeToString([]byte("ns/ep-2")); tok != want {
		t.Fatalf("token = %q, want %q", tok, want)
	}
	kept, _ = filterTrip(f, eps, map[string]string{"x-session-token": tok}, scResult(eps[2]))
	if diff := cmp.Diff(addrs(eps[2]), addrs(kept...)); diff != "" {
		t.Errorf("with the token (-want +got):\n%s", diff)
	}
	if len(kept) > 0 && cap(kept) != 1 {
		t.Errorf("the kept slice has capacity %d: an append by a later filter would overwrite the candidates", cap(kept))
	}

	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for name, token := range map[string]string{
		"endpoint not a candidate": enc("ns/ep-9"),
		"not base64":               "!!not-base64!!",
		"empty":                    "",
	} {
		got := f.Filter(scCtx, scState(), scRequest(10, map[string]string{"x-session-token": token}), eps)
		if len(got) != len(eps) {
			t.Errorf("%s: %d of %d candidates kept, want all", name, len(got), len(eps))
		}
	}
	if got := f.Filter(scCtx, scState(), scRequest(10, map[string]string{"x-session-token": tok}), nil); len(got) != 0 {
		t.Errorf("no candidates: got %d", len(got))
	}
}

// TestSessionAffinityFilterSessionID: a bound session is pinned to its
// endpoint; once that endpoint is no candidate the session goes wherever
// the profile sends it and is bound there.
func TestSessionAffinityFilterSessionID(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(3, nil)
	f := mustBuild[*SessionAffinityFilter](t, SessionAffinityFilterRegistration(), `{"strategy":"session_id"}`, scHandle(newSCClock(), nil))
	hdr := map[string]string{"x-session-id": "abc"}

	if kept, _ := filterTrip(f, eps, hdr, scResult(eps[1])); len(kept) != 3 {
		t.Errorf("unbound session: %d candidates kept, want 3", len(kept))
	}
	if kept, _ := filterTrip(f, eps, hdr, scResult(eps[1])); !slices.Equal(addrs(kept...), addrs(eps[1])) {
		t.Errorf("bound session kept %v, want only %s", addrs(kept...), eps[1].HostPort)
	}
	without := []*endpoint.Endpoint{eps[0], eps[2]} // eps[1] left the pool
	if kept, _ := filterTrip(f, without, hdr, scResult(eps[2])); len(kept) != 2 {
		t.Errorf("session's endpoint gone: %d candidates kept, want 2", len(kept))
	}
	if kept, _ := filterTrip(f, eps, hdr, scResult(eps[2])); !slices.Equal(addrs(kept...), addrs(eps[2])) {
		t.Errorf("after the move the session kept %v, want only %s", addrs(kept...), eps[2].HostPort)
	}
	if st, ok := f.DumpState().(SessionAffinityState); !ok || st.Sessions != 1 {
		t.Errorf("state = %+v, want one session", f.DumpState())
	}

	// A reload with new parameters keeps the binding.
	next := mustBuild[*SessionAffinityFilter](t, SessionAffinityFilterRegistration(),
		`{"strategy":"session_id","sessionIdConfig":{"evictionTtlSeconds":600}}`, nil)
	next.Inherit(f)
	if kept := next.Filter(scCtx, scState(), scRequest(10, hdr), eps); !slices.Equal(addrs(kept...), addrs(eps[2])) {
		t.Errorf("after a reload the session kept %v, want only %s", addrs(kept...), eps[2].HostPort)
	}
}
