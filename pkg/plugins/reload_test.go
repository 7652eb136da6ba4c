package plugins

import (
	"context"
	"strings"
	"testing"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/filters"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

const detectorConfig = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: concurrency-detector
  parameters: {maxConcurrency: MAX, requestTimeout: TTL}
- type: active-request-scorer
  parameters: {requestTimeout: TTL}
- type: random-picker
schedulingProfiles:
- name: default
  plugins: [{pluginRef: active-request-scorer}, {pluginRef: random-picker}]
saturationDetector: {pluginRef: concurrency-detector}
`

// TestReloadKeepsInFlightBooks: a reload that changes the concurrency
// detector's and the active-request scorer's parameters builds new
// instances; they must count the requests routed before the reload, which
// finish through the old instances' hooks, rather than start from zero
// and let a raised limit admit a burst on top of them.
func TestReloadKeepsInFlightBooks(t *testing.T) {
	t.Parallel()
	eps := plugintest.Endpoints(1, 1)
	reg, err := InTree()
	if err != nil {
		t.Fatal(err)
	}
	h := &scheduler.Handle{Log: logr.Discard(), Clock: scheduler.RealClock{}, Endpoints: func() []*endpoint.Endpoint { return eps }}
	build := func(max, ttl string, prev *config.Built) *config.Built {
		t.Helper()
		cfg, err := config.Load([]byte(strings.NewReplacer("MAX", max, "TTL", ttl).Replace(detectorConfig)))
		if err != nil {
			t.Fatal(err)
		}
		b, err := config.BuildWith(cfg, config.BuildOptions{Registry: reg, Handle: h, Previous: prev})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	detector := func(b *config.Built) *filters.ConcurrencyDetector {
		p, _ := b.Plugin("concurrency-detector")
		return p.(*filters.ConcurrencyDetector)
	}
	ctx := context.Background()
	old := build("4", "1h", nil)
	var states []*scheduler.State
	for range 2 {
		st := old.Scheduler.NewState()
		req := &scheduler.Request{ID: "r", Model: "m", Headers: map[string]string{}}
		res, err := old.Scheduler.Schedule(ctx, st, req, eps)
		if err != nil {
			t.Fatal(err)
		}
		old.Scheduler.PreRequest(ctx, st, req, res)
		states = append(states, st)
	}

	next := build("8", "30m", old)
	if detector(next) == detector(old) {
		t.Fatal("changed parameters reused the old detector")
	}
	if got := detector(next).Saturation(eps, plugintest.Epoch); got != 2.0/8 {
		t.Errorf("after the reload: saturation %v, want 2/8 (the two requests still in flight)", got)
	}
	if got := detector(next).Tracker().TTL().String(); got != "1h0m0s" {
		t.Errorf("before the new detector starts, the books' TTL is %s, want the old 1h0m0s", got)
	}
	stopped, cancel := context.WithCancel(ctx)
	cancel()
	if err := detector(next).Start(stopped); err != nil {
		t.Fatal(err)
	}
	if got := detector(next).Tracker().TTL().String(); got != "30m0s" {
		t.Errorf("once the new detector starts, the books' TTL is %s, want its 30m0s", got)
	}
	active, _ := next.Plugin("active-request-scorer")
	if got := active.(scheduler.Scorer).Score(ctx, next.Scheduler.NewState(), &scheduler.Request{}, eps); got[0] == 1 {
		t.Errorf("active-request-scorer scores the busy endpoint %v, as if idle", got)
	}
	for _, st := range states { // the old requests end through the old scheduler
		old.Scheduler.ResponseComplete(ctx, st, nil, &scheduler.Response{EndOfStream: true})
	}
	if got := detector(next).Saturation(eps, plugintest.Epoch); got != 0 {
		t.Errorf("after the old requests ended: saturation %v, want 0", got)
	}

	// A build that fails leaves the running instances' books alone (its
	// instances are never started).
	cfg, err := config.Load([]byte(strings.NewReplacer("MAX", "0", "TTL", "5m").Replace(detectorConfig)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.BuildWith(cfg, config.BuildOptions{Registry: reg, Handle: h, Previous: next}); err == nil {
		t.Fatal("maxConcurrency 0 was accepted")
	}
	if got := detector(next).Tracker().TTL().String(); got != "30m0s" {
		t.Errorf("a failed build changed the running books' TTL to %s", got)
	}
}

const prefixConfig = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: prefix-cache-scorer
  parameters: {lruCapacityPerServer: CAP, autoTune: false}
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins: [{pluginRef: prefix-cache-scorer}, {pluginRef: max-score-picker}]
`

// TestReloadKeepsThePrefixIndex: a reload that changes the prefix
// parameters rebuilds the producer, which must keep the index: a prompt
// routed before the reload still finds its endpoint after it.
func TestReloadKeepsThePrefixIndex(t *testing.T) {
	t.Parallel()
	eps := plugintest.Endpoints(8, 1)
	for _, e := range eps {
		e.SetMetrics(&endpoint.Metrics{})
	}
	reg, err := InTree()
	if err != nil {
		t.Fatal(err)
	}
	h := &scheduler.Handle{Log: logr.Discard(), Clock: scheduler.RealClock{}, Endpoints: func() []*endpoint.Endpoint { return eps }}
	build := func(capacity string, prev *config.Built) *config.Built {
		t.Helper()
		cfg, err := config.Load([]byte(strings.Replace(prefixConfig, "CAP", capacity, 1)))
		if err != nil {
			t.Fatal(err)
		}
		b, err := config.BuildWith(cfg, config.BuildOptions{Registry: reg, Handle: h, Previous: prev, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ps := prompts(16, 2048)
	old := build("1000", nil)
	where := make([]*endpoint.Endpoint, len(ps))
	for i, p := range ps {
		res, err := decide(old.Scheduler, p, eps)
		if err != nil {
			t.Fatal(err)
		}
		where[i] = res.Targets()[0]
	}
	next := build("2000", old)
	if a, b := old.Reused("approx-prefix-cache-producer"), next.Reused("approx-prefix-cache-producer"); a || b {
		t.Fatal("the producer was reused; the test needs a rebuilt one")
	}
	for i := len(ps) - 1; i >= 0; i-- { // another order: ties would not replay
		res, err := decide(next.Scheduler, ps[i], eps)
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Targets()[0]; got != where[i] {
			t.Errorf("prompt %d went to %s after the reload, not back to %s", i, got, where[i])
		}
	}
}
