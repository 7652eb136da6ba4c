package scorers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// Helpers are prefixed "sc" so they cannot collide with those of the
// prefix-cache scorer's tests, which share this package.

var scEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

var scCtx = context.Background()

// approx compares scores up to float rounding.
var approx = cmpopts.EquateApprox(0, 1e-9)

// scClock is a manually advanced clock.
type scClock struct {
	mu  sync.Mutex
	now time.Time
}

func newSCClock() *scClock { return &scClock{now: scEpoch} }

func (c *scClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *scClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// scEndpoints returns n endpoints "ns/ep-<i>" at 10.9.0.<i+1>:8000, with
// metrics filled by set (nil for empty metrics).
func scEndpoints(n int, set func(i int, m *endpoint.Metrics)) []*endpoint.Endpoint {
	out := make([]*endpoint.Endpoint, n)
	for i := range out {
		e := endpoint.New(endpoint.Spec{
			Name: fmt.Sprintf("ep-%d", i), Namespace: "ns", Pod: fmt.Sprintf("ep-%d", i),
			Address: fmt.Sprintf("10.9.%d.%d", i/250, i%250+1), Port: 8000,
		})
		m := &endpoint.Metrics{UpdateTime: scEpoch}
		if set != nil {
			set(i, m)
		}
		e.SetMetrics(m)
		out[i] = e
	}
	return out
}

func scState() *scheduler.State { return scheduler.NewState(1, scEpoch) }

// scResult is a scheduling result whose primary profile picked targets.
func scResult(targets ...*endpoint.Endpoint) *scheduler.Result {
	return &scheduler.Result{Primary: "default", Profiles: map[string]*scheduler.ProfileResult{"default": {Targets: targets}}}
}

func scHandle(clock scheduler.Clock, pool func() []*endpoint.Endpoint) *scheduler.Handle {
	return &scheduler.Handle{Log: logr.Discard(), Clock: clock, Endpoints: pool}
}

// scRequest is a chat request whose prompt is exactly promptBytes bytes, with
// the given extra headers.
func scRequest(promptBytes int, headers map[string]string) *scheduler.Request {
	prompt := bytes.Repeat([]byte("a"), promptBytes)
	r := &scheduler.Request{
		ID: "req-1", Model: "m", IncomingModel: "m",
		Body:    &request.Body{API: request.ChatCompletions, Model: "m", Prompt: prompt, Raw: prompt},
		Headers: map[string]string{":path": "/v1/chat/completions", "x-request-id": "req-1"},
	}
	for k, v := range headers {
		r.Headers[k] = v
	}
	return r
}

// scSource is a prefix.Source returning a fixed match.
type scSource struct {
	name  scheduler.TypedName
	match *prefix.Match
}

func (s *scSource) TypedName() scheduler.TypedName { return s.name }

func (s *scSource) Match(*scheduler.State) (*prefix.Match, bool) { return s.match, s.match != nil }

// scPlugin is a plugin that is not a prefix source.
type scPlugin struct{ name scheduler.TypedName }

func (p scPlugin) TypedName() scheduler.TypedName { return p.name }

func mustBuild[T scheduler.Plugin](t testing.TB, reg scheduler.Registration, raw string, h *scheduler.Handle) T {
	t.Helper()
	var params json.RawMessage
	if raw != "" {
		params = json.RawMessage(raw)
	}
	p, err := reg.Factory("x", params, h)
	if err != nil {
		t.Fatalf("%s factory(%s): %v", reg.Type, raw, err)
	}
	return p.(T)
}

func registrations() []scheduler.Registration {
	return []scheduler.Registration{
		QueueDepthRegistration(), KVCacheUtilizationRegistration(), RunningRequestsRegistration(),
		LoRAAffinityRegistration(), LoadAwareRegistration(), ActiveRequestsRegistration(),
		TokenLoadRegistration(), SessionAffinityRegistration(), NoHitLRURegistration(),
		ContextLengthRegistration(), PrefillBacklogRegistration(), LoRALoadStateRegistration(), // header-label-affinity-scorer has required parameters
		AcceleratorCapabilityRegistration(),
	}
}

func TestRegistrations(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, reg := range registrations() {
		t.Run(reg.Type, func(t *testing.T) {
			if seen[reg.Type] {
				t.Fatalf("duplicate type %q", reg.Type)
			}
			seen[reg.Type] = true
			if reg.Summary == "" || reg.Factory == nil || reg.Params == nil {
				t.Fatalf("incomplete registration: %+v", reg)
			}
			p, err := reg.Factory("inst", nil, scHandle(newSCClock(), nil))
			if err != nil {
				t.Fatalf("factory with no parameters: %v", err)
			}
			if diff := cmp.Diff(scheduler.TypedName{Type: reg.Type, Name: "inst"}, p.TypedName()); diff != "" {
				t.Errorf("TypedName (-want +got):\n%s", diff)
			}
			if _, ok := p.(scheduler.Scorer); !ok {
				t.Errorf("%T is not a scheduler.Scorer", p)
			}
			defaults := defaultsJSON(t, reflect.TypeOf(reg.Params))
			if _, err := reg.Factory("inst", defaults, nil); err != nil {
				t.Errorf("documented defaults %s rejected: %v", defaults, err)
			}
		})
	}
}

// defaultsJSON checks that every parameter field carries json, doc and
// default tags and returns the documented defaults as a parameters object.
func defaultsJSON(t *testing.T, typ reflect.Type) json.RawMessage {
	t.Helper()
	var parts []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, doc, def := f.Tag.Get("json"), f.Tag.Get("doc"), f.Tag.Get("default")
		if name == "" || doc == "" {
			t.Errorf("%s.%s: missing json or doc tag", typ.Name(), f.Name)
		}
		if _, ok := f.Tag.Lookup("default"); !ok {
			t.Errorf("%s.%s: missing default tag", typ.Name(), f.Name)
		}
		if def == "" {
			continue // no default: the field is optional
		}
		if f.Type.Kind() == reflect.String || !json.Valid([]byte(def)) {
			def = fmt.Sprintf("%q", def) // strings, and durations such as 2m
		}
		parts = append(parts, fmt.Sprintf("%q:%s", name, def))
	}
	return json.RawMessage("{" + strings.Join(parts, ",") + "}")
}

func TestParamErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		reg     scheduler.Registration
		raw     string
		wantErr string
	}{
		{QueueDepthRegistration(), `{"bogus":1}`, `unknown field "bogus"`},
		{KVCacheUtilizationRegistration(), `{"bogus":1}`, `unknown field "bogus"`},
		{RunningRequestsRegistration(), `[1]`, `parameters`},
		{LoRAAffinityRegistration(), `{"bogus":1}`, `unknown field "bogus"`},
		{LoadAwareRegistration(), `{"threshold":0}`, "threshold: must be >= 1"},
		{LoadAwareRegistration(), `{"threshold":"x"}`, "parameters"},
		{ActiveRequestsRegistration(), `{"idleThreshold":-1}`, "idleThreshold: must be >= 0"},
		{ActiveRequestsRegistration(), `{"maxBusyScore":1.5}`, "maxBusyScore: must be in [0, 1]"},
		{ActiveRequestsRegistration(), `{"requestTimeout":"soon"}`, `duration "soon"`},
		{ActiveRequestsRegistration(), `{"requestTimeout":0}`, "requestTimeout: must be > 0"},
		{ActiveRequestsRegistration(), `{"requestTimeout":true}`, "want a string"},
		{ActiveRequestsRegistration(), `{"requestTimeout":1e300}`, "out of range"},
		{TokenLoadRegistration(), `{"queueThresholdTokens":0}`, "queueThresholdTokens: must be >= 1"},
		{TokenLoadRegistration(), `{"outputRatio":-1}`, "outputRatio: must be a finite number >= 0"},
		{TokenLoadRegistration(), `{"maxEstimatedOutputTokens":-5}`, "maxEstimatedOutputTokens: must be >= 0"},
		{TokenLoadRegistration(), `{"requestTimeout":"-1s"}`, "requestTimeout: must be > 0"},
		{SessionAffinityRegistration(), `{"strategy":"cookie"}`, `strategy: must be "encoded_endpoint_header" or "session_id", got "cookie"`},
		{SessionAffinityRegistration(), `{"encodedEndpointHeaderConfig":{"header":" "}}`, "encodedEndpointHeaderConfig.header: must not be empty"},
		{SessionAffinityRegistration(), `{"sessionIdConfig":{"sources":[]}}`, "sessionIdConfig.sources: at least one source"},
		{SessionAffinityRegistration(), `{"sessionIdConfig":{"sources":[{"header":"x-s","attribute":"agent-identity"}]}}`, "sources[0]: give exactly one of header, cookie and attribute (got 2)"},
		{SessionAffinityRegistration(), `{"sessionIdConfig":{"sources":[{"header":""}]}}`, "sources[0]: give exactly one of header, cookie and attribute (got 0)"},
		{SessionAffinityRegistration(), `{"sessionIdConfig":{"sources":[{"attribute":" "}]}}`, "sources[0]: give exactly one of header, cookie and attribute (got 0)"},
		{SessionAffinityRegistration(), `{"sessionIdConfig":{"evictionTtlSeconds":0}}`, "evictionTtlSeconds: must be > 0"},
		{SessionAffinityRegistration(), `{"sessionIdConfig":{"evictionSweepSeconds":-1}}`, "evictionSweepSeconds: must be > 0"},
		{SessionAffinityRegistration(), `{"headerName":"x"}`, `unknown field "headerName"`},
		{NoHitLRURegistration(), `{"lruSize":0}`, "lruSize: must be >= 1"},
		{NoHitLRURegistration(), `{"prefixPluginName":""}`, "prefixPluginName: must not be empty"},
		{AcceleratorCapabilityRegistration(), `{"label":""}`, "label: must not be empty"},
		{AcceleratorCapabilityRegistration(), `{"label":"  "}`, "label: must not be empty"},
		{AcceleratorCapabilityRegistration(), `{"enableFilter":true}`, `unknown field "enableFilter"`},
		{AcceleratorCapabilityRegistration(), `{"enableFiltering":"yes"}`, "parameters"},
	}
	for _, tc := range cases {
		t.Run(tc.reg.Type+tc.raw, func(t *testing.T) {
			t.Parallel()
			_, err := tc.reg.Factory("x", json.RawMessage(tc.raw), nil)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestParamErrorsReportedTogether(t *testing.T) {
	t.Parallel()
	_, err := ActiveRequestsFactory("x", json.RawMessage(`{"idleThreshold":-1,"maxBusyScore":2}`), nil)
	if err == nil || !strings.Contains(err.Error(), "idleThreshold") || !strings.Contains(err.Error(), "maxBusyScore") {
		t.Fatalf("err = %v, want both problems", err)
	}
}

func TestDuration(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want time.Duration
	}{
		{`"2m"`, 2 * time.Minute},
		{`"1.5s"`, 1500 * time.Millisecond},
		{`90`, 90 * time.Second},
		{`0.25`, 250 * time.Millisecond},
	}
	for _, tc := range cases {
		var d Duration
		if err := json.Unmarshal([]byte(tc.in), &d); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if time.Duration(d) != tc.want {
			t.Errorf("%s = %v, want %v", tc.in, time.Duration(d), tc.want)
		}
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		var back Duration
		if err := json.Unmarshal(b, &back); err != nil || back != d {
			t.Errorf("round trip of %s via %s = %v, %v", tc.in, b, back, err)
		}
	}
}

// TestConformance runs the shared Scorer contract check on every scorer,
// stateful ones with state primed so that they return non-trivial scores.
func TestConformance(t *testing.T) {
	t.Parallel()
	req := plugintest.Request("lora-1", 300)
	for _, s := range conformanceScorers(t) {
		t.Run(s.TypedName().Type, func(t *testing.T) {
			t.Parallel()
			plugintest.Scorer(t, s, req)
		})
	}
	// Same again with session headers set.
	sessReq := scRequest(300, map[string]string{"x-session-token": endpointToken(plugintest.Endpoints(7, 8)[3], ""), "x-session-id": "s-1"})
	for _, s := range conformanceScorers(t) {
		if s.TypedName().Type == SessionAffinityType {
			plugintest.Scorer(t, s, sessReq)
		}
	}
}

// conformanceScorers builds every scorer with its state primed against the
// endpoints plugintest generates (they share addresses across calls).
func conformanceScorers(t *testing.T) []scheduler.Scorer {
	h := scHandle(newSCClock(), nil)
	pool := plugintest.Endpoints(100, 1)
	active := mustBuild[*ActiveRequests](t, ActiveRequestsRegistration(), `{"idleThreshold":1,"maxBusyScore":0.8}`, h)
	tokens := mustBuild[*TokenLoad](t, TokenLoadRegistration(), `{"queueThresholdTokens":2000}`, h)
	byID := mustBuild[*SessionAffinity](t, SessionAffinityRegistration(), `{"strategy":"session_id"}`, h)
	nohit := mustBuild[*NoHitLRU](t, NoHitLRURegistration(), "", h)
	nohit.SetSource(&scSource{name: scheduler.TypedName{Type: "p", Name: "p"}, match: prefix.NewMatch(4, 16)})
	for i, e := range pool {
		for range i % 5 {
			st := scState()
			active.PreRequest(scCtx, st, nil, scResult(e))
			tokens.PreRequest(scCtx, st, scRequest(100*i, nil), scResult(e))
		}
		if i%3 == 0 {
			nohit.PreRequest(scCtx, scState(), nil, scResult(e))
		}
	}
	byID.PreRequest(scCtx, scState(), scRequest(10, map[string]string{"x-session-id": "s-1"}), scResult(pool[4]))
	backlog := mustBuild[*PrefillBacklog](t, PrefillBacklogRegistration(), "", h)
	match := prefix.NewMatch(20, 16)
	for i, e := range pool {
		match.Set(e, i%20)
		if i%7 == 0 {
			backlog.PreRequest(scCtx, scState(), scRequest(40*i, nil), scResult(e))
		}
	}
	backlog.source = &scSource{name: scheduler.TypedName{Type: "p", Name: "p"}, match: match}
	return []scheduler.Scorer{
		mustBuild[*QueueDepth](t, QueueDepthRegistration(), "", h),
		mustBuild[*KVCacheUtilization](t, KVCacheUtilizationRegistration(), "", h),
		mustBuild[*RunningRequests](t, RunningRequestsRegistration(), "", h),
		mustBuild[*LoRAAffinity](t, LoRAAffinityRegistration(), "", h),
		mustBuild[*LoRALoadState](t, LoRALoadStateRegistration(), `{"loadHorizonSeconds":1}`, h),
		mustBuild[*LoadAware](t, LoadAwareRegistration(), `{"threshold":10}`, h),
		active, tokens,
		mustBuild[*SessionAffinity](t, SessionAffinityRegistration(), "", h),
		byID, nohit, backlog,
		mustBuild[*HeaderLabel](t, HeaderLabelRegistration(), `{"headerName":"x-zone","labelKey":"zone"}`, h),
		mustBuild[*ContextLength](t, ContextLengthRegistration(), `{"label":"zone"}`, h), // malformed ranges: all 0.5
	}
}
