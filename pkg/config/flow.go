package config

import (
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/openepp/openepp/pkg/scheduler"
)

// Flow-control defaults that differ between the two upstreams: GIE v1.5.0
// bounds a band by bytes only and lets requests wait for the client's
// deadline; llm-d also caps a band at 5,000 requests, waits 60 s at most,
// and gives a pool without endpoints 300 s to scale up.
const (
	defaultBandMaxBytes      = 1_000_000_000
	llmdBandMaxRequests      = 5000
	llmdDefaultRequestTTL    = 60 * time.Second
	llmdNoEndpointRequestTTL = 300 * time.Second
)

// FlowPlan is the flow-control configuration resolved to plugin instances,
// with every default applied. Zero limits mean unlimited; a zero TTL means
// only the client's deadline applies.
type FlowPlan struct {
	MaxRequests, MaxBytes int64
	DefaultTTL            time.Duration
	NoEndpointTTL         time.Duration
	DefaultBand           BandPlan
	// NegativeBand is the template for negative priorities (llm-d); nil
	// means DefaultBand.
	NegativeBand *BandPlan
	Bands        map[int]BandPlan
	UsageLimit   scheduler.UsageLimitPolicy
	Detector     scheduler.SaturationDetector
	// Eviction turns on in-flight eviction (llm-d's enableEviction):
	// sheddable requests already sent to a model server may be ended when
	// higher-priority requests wait behind saturation.
	Eviction bool
}

// BandPlan is one priority band's limits and policies.
type BandPlan struct {
	MaxRequests, MaxBytes int64
	Fairness              scheduler.FairnessPolicy
	Ordering              scheduler.OrderingPolicy
}

// FlowControl returns the flow-control plan, or nil when the flowControl
// feature gate is off (requests then go straight to scheduling with legacy
// shedding). A flowControl section without the gate is ignored with a
// warning at build time, as upstream ignores it.
func (b *Built) FlowControl() *FlowPlan { return b.flow }

// flowOn reports whether requests are queued: the gate decides.
func (c *Config) flowOn() bool { return c.FeatureEnabled(flowControlGate) }

// plan resolves the flowControl section; validateKinds has checked that
// every reference names a plugin of the right kind.
func (b *builder) plan(detector scheduler.SaturationDetector) *FlowPlan {
	if !b.cfg.flowOn() {
		return nil
	}
	fc := b.cfg.FlowControl
	if fc == nil {
		fc = &FlowControl{}
	}
	llmd := llmdFlavor(b.cfg.APIVersion)
	p := &FlowPlan{
		MaxRequests: quantity(fc.MaxRequests),
		MaxBytes:    quantity(fc.MaxBytes),
		Detector:    detector,
		Bands:       map[int]BandPlan{},
		Eviction:    deref(fc.EnableEviction),
	}
	if llmd {
		p.DefaultTTL, p.NoEndpointTTL = llmdDefaultRequestTTL, llmdNoEndpointRequestTTL
	}
	if fc.DefaultRequestTTL != nil {
		p.DefaultTTL = fc.DefaultRequestTTL.Duration
	}
	if fc.NoEndpointRequestTTL != nil {
		p.NoEndpointTTL = fc.NoEndpointRequestTTL.Duration
	}
	p.DefaultBand = b.band(fc.DefaultPriorityBand, llmd)
	if fc.DefaultNegativePriorityBand != nil {
		nb := b.band(fc.DefaultNegativePriorityBand, llmd)
		p.NegativeBand = &nb
	}
	for i := range fc.PriorityBands {
		pb := &fc.PriorityBands[i]
		p.Bands[deref(pb.Priority)] = b.band(pb, llmd)
	}
	p.UsageLimit, _ = b.instances[orDefault(fc.UsageLimitPolicyPluginRef, staticUsageLimitPolicy)].(scheduler.UsageLimitPolicy)
	return p
}

// band resolves one band, filling in the upstream defaults.
func (b *builder) band(pb *PriorityBand, llmd bool) BandPlan {
	out := BandPlan{MaxBytes: defaultBandMaxBytes}
	if llmd {
		out.MaxRequests = llmdBandMaxRequests
	}
	fairness, ordering := globalStrictFairness, fcfsOrderingPolicy
	if pb != nil {
		if pb.MaxBytes != nil {
			out.MaxBytes = quantity(pb.MaxBytes)
		}
		if pb.MaxRequests != nil {
			out.MaxRequests = quantity(pb.MaxRequests)
		}
		fairness = orDefault(pb.FairnessPolicyRef, fairness)
		ordering = orDefault(pb.OrderingPolicyRef, ordering)
	}
	out.Fairness, _ = b.instances[fairness].(scheduler.FairnessPolicy)
	out.Ordering, _ = b.instances[ordering].(scheduler.OrderingPolicy)
	return out
}

// checkFlowControl refuses policy references to plugins of the wrong kind,
// which would otherwise silently fall back to the defaults.
func (b *builder) checkFlowControl() {
	fc := b.cfg.FlowControl
	if fc == nil {
		return
	}
	b.checkRefKind("flowControl.usageLimitPolicyPluginRef", fc.UsageLimitPolicyPluginRef, kindUsageLimit, "a usage-limit policy")
	type namedBand struct {
		path string
		band *PriorityBand
	}
	bands := []namedBand{{"flowControl.defaultPriorityBand", fc.DefaultPriorityBand},
		{"flowControl.defaultNegativePriorityBand", fc.DefaultNegativePriorityBand}}
	for i := range fc.PriorityBands {
		bands = append(bands, namedBand{idx("flowControl.priorityBands", i), &fc.PriorityBands[i]})
	}
	for _, nb := range bands {
		if nb.band == nil {
			continue
		}
		b.checkRefKind(at(nb.path, "fairnessPolicyRef"), nb.band.FairnessPolicyRef, kindFairness, "a fairness policy")
		b.checkRefKind(at(nb.path, "orderingPolicyRef"), nb.band.OrderingPolicyRef, kindOrdering, "an ordering policy")
	}
}

func (b *builder) checkRefKind(path, name string, want pluginKind, what string) {
	if _, built := b.instances[name]; !built {
		return // empty, dangling (reported) or an optional default skipped
	}
	if k := b.kind(name); !k.has(want) {
		b.ps.add(path, "%q is %s, not %s", name, k, what)
	}
}

func quantity(q *resource.Quantity) int64 {
	if q == nil {
		return 0
	}
	v, _ := q.AsInt64() // validation refused what does not fit
	return v
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
