package scorers

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// roundTrip sends one request through Score → PreRequest(target) →
// ResponseHeaders and returns the scores and the response.
func roundTrip(s *SessionAffinity, eps []*endpoint.Endpoint, headers map[string]string, result *scheduler.Result, served string) ([]float64, *scheduler.Response) {
	st, req := scState(), scRequest(50, headers)
	scores := s.Score(scCtx, st, req, eps)
	s.PreRequest(scCtx, st, req, result)
	resp := &scheduler.Response{StatusCode: 200, Served: served}
	s.ResponseHeaders(scCtx, st, req, resp)
	return scores, resp
}

func TestSessionTokenRoundTrip(t *testing.T) {
	t.Parallel()
	s := mustBuild[*SessionAffinity](t, SessionAffinityRegistration(), "", nil)
	eps := scEndpoints(4, nil)

	scores, resp := roundTrip(s, eps, nil, scResult(eps[2], eps[3]), "")
	if diff := cmp.Diff([]float64{0, 0, 0, 0}, scores); diff != "" {
		t.Errorf("first request (-want +got):\n%s", diff)
	}
	tok := resp.AddHeaders["x-session-token"]
	if want := base64.StdEncoding.EncodeToString([]byte("ns/ep-2")); tok != want {
		t.Fatalf("token = %q, want %q", tok, want)
	}

	// The client sends the token back: the session's endpoint wins, and it
	// is handed the same token again.
	scores, resp = roundTrip(s, eps, map[string]string{"x-session-token": tok}, scResult(eps[2]), "")
	if diff := cmp.Diff([]float64{0, 0, 1, 0}, scores); diff != "" {
		t.Errorf("second request (-want +got):\n%s", diff)
	}
	if got := resp.AddHeaders["x-session-token"]; got != tok {
		t.Errorf("second token = %q, want %q", got, tok)
	}
}

func TestSessionTokenScores(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(3, nil)
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	cases := []struct {
		name  string
		token string
		want  []float64
	}{
		{"namespace/name", enc("ns/ep-1"), []float64{0, 1, 0}},
		{"ip:port", enc(eps[2].HostPort), []float64{0, 0, 1}},
		{"unpadded url-safe", base64.RawURLEncoding.EncodeToString([]byte("ns/ep-0")), []float64{1, 0, 0}},
		{"endpoint not a candidate", enc("ns/ep-9"), []float64{0, 0, 0}},
		{"wrong namespace", enc("other/ep-1"), []float64{0, 0, 0}},
		{"name without namespace", enc("ep-1"), []float64{0, 0, 0}},
		{"not base64", "!!not-base64!!", []float64{0, 0, 0}},
		{"bad length", "QUJDR", []float64{0, 0, 0}},
		{"too long", strings.Repeat("QUJD", 200), []float64{0, 0, 0}},
		{"empty", "", []float64{0, 0, 0}},
	}
	s := mustBuild[*SessionAffinity](t, SessionAffinityRegistration(), "", nil)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := s.Score(scCtx, scState(), scRequest(10, map[string]string{"x-session-token": tc.token}), eps)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("scores (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSessionTokenNamesServedEndpoint(t *testing.T) {
	t.Parallel()
	pool := scEndpoints(4, nil)
	s := mustBuild[*SessionAffinity](t, SessionAffinityRegistration(), "", scHandle(newSCClock(), func() []*endpoint.Endpoint { return pool }))
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	cases := []struct {
		name   string
		served string
		want   string
	}{
		{"fallback target", pool[1].HostPort, enc("ns/ep-1")},
		{"pool endpoint", pool[3].HostPort, enc("ns/ep-3")},
		{"unknown endpoint", "10.77.0.1:9000", enc("10.77.0.1:9000")},
		{"same as primary", pool[0].HostPort, enc("ns/ep-0")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, resp := roundTrip(s, pool, nil, scResult(pool[0], pool[1]), tc.served)
			if got := resp.AddHeaders["x-session-token"]; got != tc.want {
				t.Errorf("token = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSessionCustomHeaderAndProfile(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(3, nil)
	s := mustBuild[*SessionAffinity](t, SessionAffinityRegistration(),
		`{"profileName":"prefill","encodedEndpointHeaderConfig":{"header":"X-Session-Token-Prefill"}}`, nil)
	result := scResult(eps[0])
	result.Profiles["prefill"] = &scheduler.ProfileResult{Targets: []*endpoint.Endpoint{eps[2]}}
	// The proxy's served endpoint is the decode one: the prefill token
	// must not follow it.
	_, resp := roundTrip(s, eps, nil, result, eps[1].HostPort)
	tok := resp.AddHeaders["X-Session-Token-Prefill"]
	if want := base64.StdEncoding.EncodeToString([]byte("ns/ep-2")); tok != want {
		t.Fatalf("token = %q, want %q (headers %v)", tok, want, resp.AddHeaders)
	}
	scores := s.Score(scCtx, scState(), scRequest(10, map[string]string{"x-session-token-prefill": tok}), eps)
	if diff := cmp.Diff([]float64{0, 0, 1}, scores); diff != "" {
		t.Errorf("scores (-want +got):\n%s", diff)
	}
	// Without a prefill result, nothing is recorded and no header is set.
	_, resp = roundTrip(s, eps, nil, scResult(eps[0]), "")
	if len(resp.AddHeaders) != 0 {
		t.Errorf("headers set without a prefill pick: %v", resp.AddHeaders)
	}
}

func TestSessionInstancesKeepSeparateNotes(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(2, nil)
	decode := mustBuild[*SessionAffinity](t, SessionAffinityRegistration(), "", nil)
	prefill := mustBuild[*SessionAffinity](t, SessionAffinityRegistration(),
		`{"profileName":"prefill","encodedEndpointHeaderConfig":{"header":"x-session-token-prefill"}}`, nil)
	result := scResult(eps[0])
	result.Profiles["prefill"] = &scheduler.ProfileResult{Targets: []*endpoint.Endpoint{eps[1]}}
	st, resp := scState(), &scheduler.Response{}
	decode.PreRequest(scCtx, st, nil, result)
	prefill.PreRequest(scCtx, st, nil, result)
	decode.ResponseHeaders(scCtx, st, nil, resp)
	prefill.ResponseHeaders(scCtx, st, nil, resp)
	want := map[string]string{
		"x-session-token":         base64.StdEncoding.EncodeToString([]byte("ns/ep-0")),
		"x-session-token-prefill": base64.StdEncoding.EncodeToString([]byte("ns/ep-1")),
	}
	if diff := cmp.Diff(want, resp.AddHeaders); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
}

func TestSessionID(t *testing.T) {
	t.Parallel()
	clock := newSCClock()
	eps := scEndpoints(3, nil)
	s := mustBuild[*SessionAffinity](t, SessionAffinityRegistration(),
		`{"strategy":"session_id","sessionIdConfig":{"sources":[{"header":"X-Conversation"},{"header":"x-session-id"}],"evictionTtlSeconds":60}}`,
		scHandle(clock, nil))
	hdr := map[string]string{"x-session-id": "abc"}

	scores, resp := roundTrip(s, eps, hdr, scResult(eps[1]), "")
	if diff := cmp.Diff([]float64{0, 0, 0}, scores); diff != "" {
		t.Errorf("unbound session (-want +got):\n%s", diff)
	}
	if len(resp.AddHeaders) != 0 {
		t.Errorf("session_id wrote response headers: %v", resp.AddHeaders)
	}
	score := func(h map[string]string) []float64 { return s.Score(scCtx, scState(), scRequest(10, h), eps) }
	if diff := cmp.Diff([]float64{0, 1, 0}, score(hdr)); diff != "" {
		t.Errorf("bound session (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]float64{0, 0, 0}, score(map[string]string{"x-session-id": "other"})); diff != "" {
		t.Errorf("other session (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]float64{0, 0, 0}, score(map[string]string{"x-conversation": "abc-2"})); diff != "" {
		t.Errorf("first source, unbound (-want +got):\n%s", diff)
	}

	// A fallback served the request: the session follows it.
	roundTrip(s, eps, hdr, scResult(eps[1], eps[2]), eps[2].HostPort)
	if diff := cmp.Diff([]float64{0, 0, 1}, score(hdr)); diff != "" {
		t.Errorf("after rebind (-want +got):\n%s", diff)
	}

	// Bindings expire when unused for the TTL; use refreshes them.
	clock.Advance(50 * time.Second)
	roundTrip(s, eps, map[string]string{"x-session-id": "fresh"}, scResult(eps[0]), "")
	clock.Advance(20 * time.Second)
	if n := s.sweep(clock.Now()); n != 1 {
		t.Errorf("swept %d sessions, want 1", n)
	}
	if diff := cmp.Diff([]float64{0, 0, 0}, score(hdr)); diff != "" {
		t.Errorf("expired session (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]float64{1, 0, 0}, score(map[string]string{"x-session-id": "fresh"})); diff != "" {
		t.Errorf("fresh session (-want +got):\n%s", diff)
	}
}

func TestSessionStart(t *testing.T) {
	t.Parallel()
	clock := newSCClock()
	eps := scEndpoints(1, nil)
	byID := mustBuild[*SessionAffinity](t, SessionAffinityRegistration(),
		`{"strategy":"session_id","sessionIdConfig":{"evictionTtlSeconds":1,"evictionSweepSeconds":0.01}}`, scHandle(clock, nil))
	token := mustBuild[*SessionAffinity](t, SessionAffinityRegistration(), "", nil)
	roundTrip(byID, eps, map[string]string{"x-session-id": "a"}, scResult(eps[0]), "")
	clock.Advance(2 * time.Second)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- byID.Start(ctx) }()
	go func() { done <- token.Start(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for byID.sessionCount() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("background sweep never evicted the idle session")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	for range 2 {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Start = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Start did not return after cancel")
		}
	}
}

func (s *SessionAffinity) sessionCount() int {
	s.book.mu.RLock()
	defer s.book.mu.RUnlock()
	return s.book.table.len()
}

func TestDecodeToken(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "a", "ab", "abc", "ns/name", "kube-system/vllm-7f9c-rank-0", "10.0.0.1:8000", "\xff\x00\xfe"} {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			var buf [maxTokenBytes]byte
			n, ok := decodeToken(buf[:], enc.EncodeToString([]byte(in)))
			if !ok || string(buf[:n]) != in {
				t.Errorf("decode(encode(%q)) = %q, %v", in, buf[:n], ok)
			}
		}
	}
}

func FuzzDecodeToken(f *testing.F) {
	for _, s := range []string{"", "bnMvZXAtMQ==", "bnMvZXAtMQ", "!!", "QUJDR", "====", "QQ==", "\r", "QQ\n=="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		var buf [maxTokenBytes]byte
		n, ok := decodeToken(buf[:], tok) // must not panic
		if strings.ContainsAny(tok, "\r\n") {
			return // encoding/base64 skips line breaks; a header value cannot hold them
		}
		if want, err := base64.StdEncoding.DecodeString(tok); err == nil && len(want) <= maxTokenBytes {
			if !ok || string(buf[:n]) != string(want) {
				t.Errorf("decodeToken(%q) = %q, %v; want %q", tok, buf[:n], ok, want)
			}
		}
	})
}

func TestSessionIDSourcePriority(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(2, nil)
	s := mustBuild[*SessionAffinity](t, SessionAffinityRegistration(),
		`{"strategy":"session_id","sessionIdConfig":{"sources":[{"header":"x-conversation"},{"header":"x-session-id"}]}}`, nil)
	roundTrip(s, eps, map[string]string{"x-conversation": "c"}, scResult(eps[0]), "")
	roundTrip(s, eps, map[string]string{"x-session-id": "s"}, scResult(eps[1]), "")
	both := map[string]string{"x-conversation": "c", "x-session-id": "s"}
	if diff := cmp.Diff([]float64{1, 0}, s.Score(scCtx, scState(), scRequest(10, both), eps)); diff != "" {
		t.Errorf("first source must win (-want +got):\n%s", diff)
	}
}

func TestSessionIDFromAttribute(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(2, nil)
	s := mustBuild[*SessionAffinity](t, SessionAffinityRegistration(),
		`{"strategy":"session_id","sessionIdConfig":{"sources":[{"attribute":"agent-identity"},{"header":"x-session-id"}]}}`, nil)
	if diff := cmp.Diff([]string{"agent-identity"}, s.AttributeKeys()); diff != "" {
		t.Errorf("attribute keys (-want +got):\n%s", diff)
	}
	withAttr := func(attr, header string) *scheduler.Request {
		req := scRequest(10, map[string]string{"x-session-id": header})
		if attr != "" {
			req.Attributes = map[string]string{"agent-identity": attr}
		}
		return req
	}
	st := scState()
	req := withAttr("agent:1", "h")
	s.Score(scCtx, st, req, eps)
	s.PreRequest(scCtx, st, req, scResult(eps[1]))
	for _, tc := range []struct {
		name string
		req  *scheduler.Request
		want []float64
	}{
		{"same agent session, other header", withAttr("agent:1", "other"), []float64{0, 1}},
		{"other agent session", withAttr("agent:2", "h"), []float64{0, 0}},
		{"no attribute: the header source", withAttr("", "h"), []float64{0, 0}},
	} {
		if diff := cmp.Diff(tc.want, s.Score(scCtx, scState(), tc.req, eps)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}

	token := mustBuild[*SessionAffinity](t, SessionAffinityRegistration(), `{"sessionIdConfig":{"sources":[{"attribute":"agent-identity"}]}}`, nil)
	if keys := token.AttributeKeys(); len(keys) != 0 {
		t.Errorf("encoded_endpoint_header reads no sources, but claims attributes %v", keys)
	}
}

// TestSessionBindingsSurviveAReload: the instance a reload builds with new
// parameters keeps the sessions, and the old instance's late rebinds land
// in the same book.
func TestSessionBindingsSurviveAReload(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(3, nil)
	build := func(raw string) *SessionAffinity {
		return mustBuild[*SessionAffinity](t, SessionAffinityRegistration(), raw, nil)
	}
	old := build(`{"strategy":"session_id","sessionIdConfig":{"evictionTtlSeconds":60}}`)
	a, b := map[string]string{"x-session-id": "a"}, map[string]string{"x-session-id": "b"}
	roundTrip(old, eps, a, scResult(eps[1]), "")

	next := build(`{"strategy":"session_id","sessionIdConfig":{"evictionTtlSeconds":600}}`)
	next.Inherit(old)
	if diff := cmp.Diff([]float64{0, 1, 0}, next.Score(scCtx, scState(), scRequest(10, a), eps)); diff != "" {
		t.Errorf("session bound before the reload (-want +got):\n%s", diff)
	}
	roundTrip(old, eps, b, scResult(eps[2]), "") // a request routed before the reload ends late
	if diff := cmp.Diff([]float64{0, 0, 1}, next.Score(scCtx, scState(), scRequest(10, b), eps)); diff != "" {
		t.Errorf("session bound by the old instance after the reload (-want +got):\n%s", diff)
	}

	token := build(`{}`)
	token.Inherit(old)
	if token.book == old.book {
		t.Error("an encoded_endpoint_header instance took the session_id book")
	}

	// A lower maxSessions applies at the next new session, all at once.
	small := build(`{"strategy":"session_id","sessionIdConfig":{"maxSessions":1}}`)
	small.Inherit(next)
	roundTrip(small, eps, map[string]string{"x-session-id": "c"}, scResult(eps[0]), "")
	if n := small.sessionCount(); n != 1 {
		t.Errorf("%d sessions kept after a new one at maxSessions 1, want 1", n)
	}
}

func TestSessionConcurrentHooks(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(10, nil)
	h := scHandle(newSCClock(), func() []*endpoint.Endpoint { return eps })
	for _, raw := range []string{"", `{"strategy":"session_id"}`} {
		s := mustBuild[*SessionAffinity](t, SessionAffinityRegistration(), raw, h)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				hammerSession(s, eps, g)
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				s.sweep(scEpoch)
			}
		}()
		wg.Wait()
	}
}

// hammerSession runs requests of a few sessions through every hook of s.
func hammerSession(s *SessionAffinity, eps []*endpoint.Endpoint, g int) {
	for i := range 200 {
		id := fmt.Sprintf("s-%d", (g+i)%5)
		hdr := map[string]string{"x-session-id": id, "x-session-token": endpointToken(eps[i%len(eps)], "")}
		roundTrip(s, eps, hdr, scResult(eps[(g*3+i)%len(eps)], eps[i%len(eps)]), eps[i%len(eps)].HostPort)
	}
}

// TestSessionIDBounded checks that client-chosen session IDs cannot grow
// the binding map past maxSessions: when it is full, a new session replaces
// the least recently used one (an expired one before any live one), and
// recently used sessions keep their endpoint. An ID's length does not
// matter.
func TestSessionIDBounded(t *testing.T) {
	t.Parallel()
	clock := newSCClock()
	eps := scEndpoints(3, nil)
	s := mustBuild[*SessionAffinity](t, SessionAffinityRegistration(),
		`{"strategy":"session_id","sessionIdConfig":{"evictionTtlSeconds":60,"maxSessions":100}}`, scHandle(clock, nil))
	bind := func(id string, ep int) {
		roundTrip(s, eps, map[string]string{"x-session-id": id}, scResult(eps[ep]), "")
		clock.Advance(time.Millisecond)
	}
	bound := func(id string) bool {
		scores := s.Score(scCtx, scState(), scRequest(10, map[string]string{"x-session-id": id}), eps)
		return slices.Contains(scores, 1)
	}
	long := strings.Repeat("x", 64<<10)
	for i := range 100 {
		bind(fmt.Sprintf("%s-%03d", long, i), i%3)
	}
	bind(long+"-000", 0) // used again: now the most recent
	bind("newcomer", 1)  // the map is full: the oldest, 001, goes
	bind("newcomer-2", 1)
	if n := s.sessionCount(); n != 100 {
		t.Errorf("%d bindings, want the bound, 100", n)
	}
	for i, want := range map[int]bool{0: true, 1: false, 2: false, 3: true, 99: true} {
		if got := bound(fmt.Sprintf("%s-%03d", long, i)); got != want {
			t.Errorf("session %d bound = %v, want %v", i, got, want)
		}
	}
	if !bound("newcomer") || !bound("newcomer-2") {
		t.Error("a new session was not bound")
	}
	// Expired bindings make room before any live one.
	clock.Advance(time.Minute)
	for i := range 10 {
		bind(fmt.Sprintf("late-%d", i), 0)
	}
	for i := range 10 {
		if !bound(fmt.Sprintf("late-%d", i)) {
			t.Errorf("late-%d not bound", i)
		}
	}
	if n := s.sweep(clock.Now()); n != 90 {
		t.Errorf("sweep removed %d expired bindings, want 90", n)
	}
	if n := s.sessionCount(); n != 10 {
		t.Errorf("%d bindings after the sweep, want the 10 live ones", n)
	}
}
