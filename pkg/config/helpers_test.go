package config

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/pickers"
	"github.com/openepp/openepp/pkg/profiles"
	"github.com/openepp/openepp/pkg/scheduler"
)

// The test plugins below stand in for the built-ins being written elsewhere:
// each has the kind its upstream namesake has, and records its parameters.

type base struct {
	tn     scheduler.TypedName
	params string
}

func (b *base) TypedName() scheduler.TypedName { return b.tn }

type filterPlugin struct{ *base }

func (*filterPlugin) Filter(_ context.Context, _ *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint) []*endpoint.Endpoint {
	return eps
}

type scorerPlugin struct{ *base }

func (*scorerPlugin) Score(_ context.Context, _ *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint) []float64 {
	out := make([]float64, len(eps))
	for i := range out {
		out[i] = float64(i) / float64(len(eps))
	}
	return out
}

// pickerPlugin picks the highest score, first on ties.
type pickerPlugin struct{ *base }

func (*pickerPlugin) Pick(_ context.Context, _ *scheduler.State, _ *scheduler.Request, scored []scheduler.Scored) ([]*endpoint.Endpoint, error) {
	best := 0
	for i, s := range scored {
		if s.Score > scored[best].Score {
			best = i
		}
	}
	return []*endpoint.Endpoint{scored[best].Endpoint}, nil
}

// handlerPlugin stands in for multi-profile handlers such as
// disagg-profile-handler.
type handlerPlugin struct{ *base }

func (*handlerPlugin) Pick(_ context.Context, _ *scheduler.State, _ *scheduler.Request, ps map[string]*scheduler.Profile, results map[string]*scheduler.ProfileResult) []*scheduler.Profile {
	if len(results) > 0 {
		return nil
	}
	var out []*scheduler.Profile
	for _, p := range ps {
		out = append(out, p)
	}
	return out
}

func (*handlerPlugin) ProcessResults(_ context.Context, _ *scheduler.State, _ *scheduler.Request, results map[string]*scheduler.ProfileResult) (*scheduler.Result, error) {
	return &scheduler.Result{Profiles: results, Primary: "decode"}, nil
}

// producerPlugin is stateful with background work, like the prefix index.
type producerPlugin struct{ *base }

func (*producerPlugin) Produce(context.Context, *scheduler.State, *scheduler.Request, []*endpoint.Endpoint) {
}
func (*producerPlugin) PreRequest(context.Context, *scheduler.State, *scheduler.Request, *scheduler.Result) {
}
func (*producerPlugin) Start(ctx context.Context) error { <-ctx.Done(); return nil }

// runnablePlugin stands in for data sources.
type runnablePlugin struct{ *base }

func (*runnablePlugin) Start(ctx context.Context) error { <-ctx.Done(); return nil }

// intervalSource stands in for a data source taking dataLayer.sources'
// interval (dcgm-data-source).
type intervalSource struct {
	runnablePlugin
	interval time.Duration
}

func (s *intervalSource) SetInterval(d time.Duration) { s.interval = d }

// discoveryPlugin stands in for file-discovery: it publishes nothing.
type discoveryPlugin struct{ *base }

func (*discoveryPlugin) Discover(ctx context.Context, publish func([]endpoint.Spec)) error {
	publish(nil)
	<-ctx.Done()
	return nil
}

// plainPlugin stands in for extractors, parsers and policies.
type plainPlugin struct{ *base }

// detectorPlugin rates every pool saturated.
type detectorPlugin struct{ filterPlugin }

func (*detectorPlugin) Saturation([]*endpoint.Endpoint, time.Time) float64 { return 1 }

// Flow-control policy stand-ins.
type (
	fairnessPlugin   struct{ *base }
	orderingPlugin   struct{ *base }
	usageLimitPlugin struct{ *base }
)

// fairnessSourcePlugin stands in for agent-identity.
type fairnessSourcePlugin struct{ *base }

func (*fairnessSourcePlugin) FairnessID(context.Context, map[string]string) string { return "" }

func (*fairnessPlugin) NewChooser() scheduler.FlowChooser       { return nil }
func (*orderingPlugin) Less(a, b *scheduler.QueuedRequest) bool { return a.Seq < b.Seq }
func (*usageLimitPlugin) Ceiling(int) float64                   { return 1 }

// resolverScorer looks up the plugin named by its "target" parameter.
type resolverScorer struct {
	scorerPlugin
	target string
	found  scheduler.Plugin
}

func (r *resolverScorer) Resolve(h *scheduler.Handle) error {
	p, ok := h.Plugin(r.target)
	if !ok {
		return fmt.Errorf("no plugin named %q", r.target)
	}
	r.found = p
	return nil
}

type maker func(*base) scheduler.Plugin

var (
	mkFilter    maker = func(b *base) scheduler.Plugin { return &filterPlugin{b} }
	mkScorer    maker = func(b *base) scheduler.Plugin { return &scorerPlugin{b} }
	mkPicker    maker = func(b *base) scheduler.Plugin { return &pickerPlugin{b} }
	mkHandler   maker = func(b *base) scheduler.Plugin { return &handlerPlugin{b} }
	mkProducer  maker = func(b *base) scheduler.Plugin { return &producerPlugin{b} }
	mkRunnable  maker = func(b *base) scheduler.Plugin { return &runnablePlugin{b} }
	mkInterval  maker = func(b *base) scheduler.Plugin { return &intervalSource{runnablePlugin: runnablePlugin{b}} }
	mkPlain     maker = func(b *base) scheduler.Plugin { return &plainPlugin{b} }
	mkDiscovery maker = func(b *base) scheduler.Plugin { return &discoveryPlugin{b} }
	mkFairness  maker = func(b *base) scheduler.Plugin { return &fairnessPlugin{b} }
	mkOrdering  maker = func(b *base) scheduler.Plugin { return &orderingPlugin{b} }
	mkLimit     maker = func(b *base) scheduler.Plugin { return &usageLimitPlugin{b} }
	mkSource    maker = func(b *base) scheduler.Plugin { return &fairnessSourcePlugin{b} }
	// mkDetector filters too, as upstream's utilization-detector does.
	mkDetector maker = func(b *base) scheduler.Plugin { return &detectorPlugin{filterPlugin{b}} }
)

// testTypes maps every upstream type the shipped configs use to a stand-in.
var testTypes = map[string]maker{
	"queue-scorer":                  mkScorer,
	"kv-cache-utilization-scorer":   mkScorer,
	"prefix-cache-scorer":           mkScorer,
	"lora-affinity-scorer":          mkScorer,
	"lora-load-state-scorer":        mkScorer,
	"load-aware-scorer":             mkScorer,
	"active-request-scorer":         mkScorer,
	"running-requests-size-scorer":  mkScorer,
	"token-load-scorer":             mkScorer,
	"prefill-backlog-scorer":        mkScorer,
	"prefix-cache-affinity-filter":  mkFilter,
	"decode-filter":                 mkFilter,
	"prefill-filter":                mkFilter,
	"label-selector-filter":         mkFilter,
	"by-label-selector":             mkFilter,
	"disagg-headers-handler":        mkPlain,
	"max-score-picker":              mkPicker,
	"weighted-random-picker":        mkPicker,
	"disagg-profile-handler":        mkHandler,
	"approx-prefix-cache-producer":  mkProducer,
	"precise-prefix-cache-producer": mkProducer,
	"token-producer":                mkProducer,
	"inflight-load-producer":        mkProducer,
	"mm-embeddings-cache-producer":  mkProducer,
	"p2p-source-producer":           mkProducer,
	"burst-prefix-cache-producer":   mkProducer,
	"topology-extractor":            mkPlain,
	"topology-affinity-scorer":      mkScorer,
	"topology-affinity-filter":      mkFilter,
	"mm-embeddings-cache-scorer":    mkScorer,
	"metrics-data-source":           mkInterval,
	"core-metrics-extractor":        mkPlain,
	"utilization-detector":          mkDetector,
	"concurrency-detector":          mkDetector,
	"openai-parser":                 mkPlain,
	"anthropic-parser":              mkPlain,
	"vllmhttp-parser":               mkPlain,
	"sglanghttp-parser":             mkPlain,
	"passthrough-parser":            mkPlain,
	"fcfs-ordering-policy":          mkOrdering,
	"edf-ordering-policy":           mkOrdering,
	"slo-deadline-ordering-policy":  mkOrdering,
	"global-strict-fairness-policy": mkFairness,
	"round-robin-fairness-policy":   mkFairness,
	"static-usage-limit-policy":     mkLimit,
	"prefix-based-pd-decider":       mkPlain,
	"file-discovery":                mkDiscovery,
	"agent-identity":                mkSource,
	"dcgm-data-source":              mkInterval,
	"dcgm-extractor":                mkPlain,
	"endpoint-attribute-filter":     mkFilter,
	"endpoint-attribute-scorer":     mkScorer,
}

// testRegistry registers the stand-ins (minus skip), the real
// single-profile-handler and random-picker, and a few misbehaving types.
func testRegistry(t testing.TB, skip ...string) *scheduler.Registry {
	t.Helper()
	r := scheduler.NewRegistry()
	skipped := map[string]bool{}
	for _, s := range skip {
		skipped[s] = true
	}
	for typ, mk := range testTypes {
		if !skipped[typ] {
			mustRegister(t, r, scheduler.Registration{Type: typ, Factory: fakeFactory(typ, mk)})
		}
	}
	if !skipped[profiles.SingleType] {
		mustRegister(t, r, scheduler.Registration{Type: profiles.SingleType, Factory: profiles.SingleFactory})
	}
	mustRegister(t, r, scheduler.Registration{Type: pickers.RandomType, Factory: pickers.RandomFactory})
	mustRegister(t, r, scheduler.Registration{Type: "strict-scorer", Factory: strictScorerFactory})
	mustRegister(t, r, scheduler.Registration{Type: "resolver-scorer", Factory: resolverFactory})
	mustRegister(t, r, scheduler.Registration{Type: "panicky", Factory: func(string, json.RawMessage, *scheduler.Handle) (scheduler.Plugin, error) {
		panic("boom")
	}})
	mustRegister(t, r, scheduler.Registration{Type: "misnamed", Factory: func(string, json.RawMessage, *scheduler.Handle) (scheduler.Plugin, error) {
		return &plainPlugin{&base{tn: scheduler.TypedName{Type: "misnamed", Name: "other"}}}, nil
	}})
	return r
}

func mustRegister(t testing.TB, r *scheduler.Registry, reg scheduler.Registration) {
	t.Helper()
	if err := r.Register(reg); err != nil {
		t.Fatal(err)
	}
}

func fakeFactory(typ string, mk maker) scheduler.Factory {
	return func(name string, params json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
		return mk(&base{tn: scheduler.TypedName{Type: typ, Name: name}, params: canonicalJSON(params)}), nil
	}
}

func strictScorerFactory(name string, params json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	var p struct {
		Threshold float64 `json:"threshold"`
		Label     string  `json:"label"`
	}
	if err := scheduler.DecodeParams(params, &p); err != nil {
		return nil, err
	}
	if p.Threshold < 0 {
		return nil, errors.New("threshold: must be >= 0")
	}
	return &scorerPlugin{&base{tn: scheduler.TypedName{Type: "strict-scorer", Name: name}}}, nil
}

func resolverFactory(name string, params json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	var p struct {
		Target string `json:"target"`
	}
	if err := scheduler.DecodeParams(params, &p); err != nil {
		return nil, err
	}
	b := &base{tn: scheduler.TypedName{Type: "resolver-scorer", Name: name}, params: canonicalJSON(params)}
	return &resolverScorer{scorerPlugin: scorerPlugin{b}, target: p.Target}, nil
}

// problemsOf returns an *Error's lines, or the plain message of any other
// error, or nil.
func problemsOf(err error) []string {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Strings()
	}
	return []string{"not an *Error: " + err.Error()}
}

// header is the two constant lines of every test config.
const header = "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n"
