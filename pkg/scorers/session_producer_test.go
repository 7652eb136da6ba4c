package scorers

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/openepp/openepp/pkg/scheduler"
)

// producerHandle resolves names to the given plugins.
func producerHandle(plugins map[string]scheduler.Plugin) *scheduler.Handle {
	return scHandle(newSCClock(), nil).WithLookup(func(n string) (scheduler.Plugin, bool) { p, ok := plugins[n]; return p, ok })
}

// TestSessionIDProducerFeedsConsumers: the producer binds a session to the
// endpoint its request went to; a scorer and a filter naming it follow the
// binding, keep none of their own and hand out no token.
func TestSessionIDProducerFeedsConsumers(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(3, nil)
	producer := mustBuild[*SessionIDProducer](t, SessionIDProducerRegistration(), `{"cookieName":"llm-d-session"}`, scHandle(newSCClock(), nil))
	h := producerHandle(map[string]scheduler.Plugin{"sessions": producer})
	scorer := mustBuild[*SessionAffinity](t, SessionAffinityRegistration(), `{"sessionIDProducerName":"sessions"}`, nil)
	filter := mustBuild[*SessionAffinityFilter](t, SessionAffinityFilterRegistration(), `{"sessionIDProducerName":"sessions"}`, nil)
	for _, r := range []scheduler.Resolver{scorer, filter} {
		if err := r.Resolve(h); err != nil {
			t.Fatal(err)
		}
	}
	cookie := map[string]string{"cookie": "theme=dark; llm-d-session=abc"}
	st, req := scState(), scRequest(10, cookie)
	scorer.PreRequest(scCtx, st, req, scResult(eps[0])) // consumers bind nothing
	producer.PreRequest(scCtx, st, req, scResult(eps[2]))
	resp := &scheduler.Response{StatusCode: 200}
	scorer.ResponseHeaders(scCtx, st, req, resp)
	producer.ResponseHeaders(scCtx, st, req, resp)
	if len(resp.AddHeaders) != 0 {
		t.Errorf("response headers %v, want none", resp.AddHeaders)
	}
	if got := scorer.Score(scCtx, scState(), scRequest(10, cookie), eps); !slices.Equal(got, []float64{0, 0, 1}) {
		t.Errorf("scores %v, want the producer's binding [0 0 1]", got)
	}
	if got := filter.Filter(scCtx, scState(), scRequest(10, cookie), eps); len(got) != 1 || got[0] != eps[2] {
		t.Errorf("filter kept %v, want the bound endpoint only", addrs(got...))
	}
	other := map[string]string{"cookie": "llm-d-session=xyz", "x-session-id": "abc"}
	if got := scorer.Score(scCtx, scState(), scRequest(10, other), eps); !slices.Equal(got, []float64{0, 0, 0}) {
		t.Errorf("another session scores %v, want none", got)
	}
	if st, ok := scorer.DumpState().(SessionAffinityState); !ok || st.Sessions != 1 {
		t.Errorf("scorer state %+v, want the producer's one session", scorer.DumpState())
	}
}

// TestSessionAffinityFollowsAListedProducer: with no strategy of its own
// a scorer follows the plugin named session-id-producer when the config
// lists one (llm-d's newer configs); with a strategy given it keeps its
// own; a named producer must exist and be one.
func TestSessionAffinityFollowsAListedProducer(t *testing.T) {
	t.Parallel()
	producer := mustBuild[*SessionIDProducer](t, SessionIDProducerRegistration(), "", nil)
	h := producerHandle(map[string]scheduler.Plugin{"session-id-producer": producer, "q": scPlugin{}})
	for raw, follows := range map[string]bool{"": true, `{"profileName":""}`: true, `{"strategy":"session_id"}`: false, `{"sessionIdConfig":{}}`: false} {
		s := mustBuild[*SessionAffinity](t, SessionAffinityRegistration(), raw, nil)
		if err := s.Resolve(h); err != nil || (s.producer != nil) != follows {
			t.Errorf("%q: Resolve %v, follows the producer %v, want %v", raw, err, s.producer != nil, follows)
		}
		s = mustBuild[*SessionAffinity](t, SessionAffinityRegistration(), raw, nil)
		if err := s.Resolve(producerHandle(nil)); err != nil || s.producer != nil {
			t.Errorf("%q without a producer: Resolve %v, follows %v", raw, err, s.producer != nil)
		}
	}
	for raw, want := range map[string]string{
		`{"sessionIDProducerName":"missing"}`: `no plugin named "missing"`,
		`{"sessionIDProducerName":"q"}`:       "is not a session-id-producer",
	} {
		s := mustBuild[*SessionAffinity](t, SessionAffinityRegistration(), raw, nil)
		if err := s.Resolve(h); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: Resolve = %v, want %q", raw, err, want)
		}
	}
}

func TestSessionIDProducerParams(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(2, nil)
	p := mustBuild[*SessionIDProducer](t, SessionIDProducerRegistration(), `{}`, nil) // llm-d's default: x-session-id
	st, req := scState(), scRequest(10, map[string]string{"x-session-id": "s1"})
	p.PreRequest(scCtx, st, req, scResult(eps[1]))
	if i := p.inner.sessionIDEndpoint(scRequest(10, map[string]string{"x-session-id": "s1"}), eps); i != 1 {
		t.Errorf("default header: bound endpoint %d, want 1", i)
	}
	for raw, want := range map[string]string{
		`{"headerName":"a","cookieName":"b"}`: "give one of them",
		`{"lruSize":10}`:                      "one is required when parameters are given",
		`{"headerName":"a","ttl":"soon"}`:     `ttl: must be a Go duration > 0, got "soon"`,
		`{"headerName":"a","ttl":"-1m"}`:      "ttl: must be a Go duration > 0",
		`{"headerName":"a","lruSize":0}`:      "lruSize: must be >= 1",
		`{"header":"a"}`:                      `unknown field "header"`,
	} {
		plugin, err := SessionIDProducerRegistration().Factory("x", json.RawMessage(raw), nil)
		if err == nil || plugin != nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: plugin %v, err %v; want a nil plugin and an error containing %q", raw, plugin, err, want)
		}
	}
}
