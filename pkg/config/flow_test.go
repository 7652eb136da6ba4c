package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestFlowPlanDefaults checks the resolved flow-control plan: off without
// the gate (legacy shedding stays), GIE's and llm-d's defaults with it, and
// explicit values and bands taking precedence.
func TestFlowPlanDefaults(t *testing.T) {
	plugins := "plugins: [{type: queue-scorer}]\n"
	t.Run("gate off", func(t *testing.T) {
		b, err := build(t, header+plugins+"flowControl: {maxRequests: 10}\n")
		if err != nil {
			t.Fatal(err)
		}
		if b.FlowControl() != nil {
			t.Error("flow plan without the gate")
		}
		if b.Scheduler.SaturationDetector() == nil {
			t.Error("legacy shedding lost without the gate")
		}
		if !strings.Contains(strings.Join(b.Warnings, "\n"), "flowControl: ignored because the flowControl feature gate is off") {
			t.Errorf("no warning about the ignored section: %q", b.Warnings)
		}
	})
	t.Run("GIE defaults", func(t *testing.T) {
		b, err := build(t, header+"featureGates: [flowControl]\n"+plugins)
		if err != nil {
			t.Fatal(err)
		}
		p := b.FlowControl()
		if p == nil {
			t.Fatal("no flow plan with the gate on")
		}
		if b.Scheduler.SaturationDetector() != nil {
			t.Error("legacy shedding still on with flow control")
		}
		if p.Detector == nil || p.UsageLimit == nil || p.DefaultBand.Fairness == nil || p.DefaultBand.Ordering == nil {
			t.Fatalf("unresolved plugins: %+v", p)
		}
		got := []any{p.MaxRequests, p.MaxBytes, p.DefaultTTL, p.NoEndpointTTL, p.DefaultBand.MaxRequests, p.DefaultBand.MaxBytes,
			p.DefaultBand.Fairness.TypedName().Type, p.DefaultBand.Ordering.TypedName().Type, p.NegativeBand == nil}
		want := []any{int64(0), int64(0), time.Duration(0), time.Duration(0), int64(0), int64(1_000_000_000),
			globalStrictFairness, fcfsOrderingPolicy, true}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("plan (-want +got):\n%s", diff)
		}
	})
	t.Run("llm-d defaults and explicit values", func(t *testing.T) {
		b, err := build(t, llmd+`featureGates: [flowControl]
plugins: [{type: queue-scorer}, {type: round-robin-fairness-policy}, {type: edf-ordering-policy}]
flowControl:
  maxBytes: 1Gi
  defaultNegativePriorityBand: {maxRequests: 7}
  priorityBands:
  - {priority: 10, maxBytes: 2k, fairnessPolicyRef: round-robin-fairness-policy, orderingPolicyRef: edf-ordering-policy}
`)
		if err != nil {
			t.Fatal(err)
		}
		p := b.FlowControl()
		if p.MaxBytes != 1<<30 || p.DefaultTTL != time.Minute || p.NoEndpointTTL != 5*time.Minute || p.DefaultBand.MaxRequests != 5000 {
			t.Errorf("llm-d defaults: %+v", p)
		}
		if p.NegativeBand == nil || p.NegativeBand.MaxRequests != 7 || p.NegativeBand.MaxBytes != 1_000_000_000 {
			t.Errorf("negative band: %+v", p.NegativeBand)
		}
		band := p.Bands[10]
		if band.MaxBytes != 2000 || band.MaxRequests != 5000 ||
			band.Fairness.TypedName().Type != "round-robin-fairness-policy" || band.Ordering.TypedName().Type != "edf-ordering-policy" {
			t.Errorf("band 10: %+v", band)
		}
	})
}

// TestFlowPolicyKinds refuses a policy reference to a plugin of another kind.
func TestFlowPolicyKinds(t *testing.T) {
	_, err := build(t, header+`featureGates: [flowControl]
plugins: [{type: queue-scorer}, {type: fcfs-ordering-policy}]
flowControl:
  usageLimitPolicyPluginRef: queue-scorer
  priorityBands:
  - {priority: 1, fairnessPolicyRef: fcfs-ordering-policy, orderingPolicyRef: queue-scorer}
`)
	want := []string{
		`flowControl.usageLimitPolicyPluginRef: "queue-scorer" is a scorer, not a usage-limit policy`,
		`flowControl.priorityBands[0].fairnessPolicyRef: "fcfs-ordering-policy" is an ordering policy, not a fairness policy`,
		`flowControl.priorityBands[0].orderingPolicyRef: "queue-scorer" is a scorer, not an ordering policy`,
	}
	if diff := cmp.Diff(want, problemsOf(err)); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

// TestEvictionReachesThePlan: llm-d's enableEviction turns on in-flight
// eviction; paired with a scraped detector the EPP says why it will be slow.
func TestEvictionReachesThePlan(t *testing.T) {
	b, err := build(t, llmd+"featureGates: [flowControl]\nplugins: [{type: queue-scorer}]\nflowControl: {enableEviction: true}\n")
	if err != nil {
		t.Fatal(err)
	}
	if p := b.FlowControl(); p == nil || !p.Eviction {
		t.Fatalf("plan %+v, want eviction on", p)
	}
	if !strings.Contains(strings.Join(b.Warnings, "\n"), "concurrency-detector sees it at once") {
		t.Errorf("warnings %q", b.Warnings)
	}
	b, err = build(t, llmd+`featureGates: [flowControl]
plugins: [{type: queue-scorer}, {type: concurrency-detector}]
flowControl: {enableEviction: true, saturationDetector: {pluginRef: concurrency-detector}}
`)
	if err != nil {
		t.Fatal(err)
	}
	if p := b.FlowControl(); p == nil || !p.Eviction || len(b.Warnings) != 0 {
		t.Errorf("plan %+v warnings %q, want eviction on and no warning", p, b.Warnings)
	}
}
