package promalias

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestAliasCopiesFamilyWithRenamedLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	attempts := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gie_attempts_total", Help: "Attempts."},
		[]string{"status", "pod_name"})
	latency := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gie_latency_seconds", Help: "Latency.",
		Buckets: []float64{0.1, 1}})
	reg.MustRegister(attempts, latency)
	attempts.WithLabelValues("success", "pod-a").Add(3)
	latency.Observe(0.5)

	g := New(reg, []Alias{
		{From: "gie_attempts_total", To: "new_attempts_total", Labels: map[string]string{"pod_name": "endpoint_name"}},
		{From: "gie_latency_seconds", To: "new_latency_seconds"},
		{From: "absent_family", To: "never_served"},
	})
	want := `
# HELP gie_attempts_total Attempts.
# TYPE gie_attempts_total counter
gie_attempts_total{pod_name="pod-a",status="success"} 3
# HELP new_attempts_total Attempts.
# TYPE new_attempts_total counter
new_attempts_total{endpoint_name="pod-a",status="success"} 3
# HELP gie_latency_seconds Latency.
# TYPE gie_latency_seconds histogram
gie_latency_seconds_bucket{le="0.1"} 0
gie_latency_seconds_bucket{le="1"} 1
gie_latency_seconds_bucket{le="+Inf"} 1
gie_latency_seconds_sum 0.5
gie_latency_seconds_count 1
# HELP new_latency_seconds Latency.
# TYPE new_latency_seconds histogram
new_latency_seconds_bucket{le="0.1"} 0
new_latency_seconds_bucket{le="1"} 1
new_latency_seconds_bucket{le="+Inf"} 1
new_latency_seconds_sum 0.5
new_latency_seconds_count 1
`
	if err := testutil.GatherAndCompare(g, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	// The source's own families are untouched by the renaming of the copy.
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "gie_attempts_total"); err != nil {
		t.Fatal(err)
	}
}

func TestAliasNeverShadowsANativeFamily(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := prometheus.NewGauge(prometheus.GaugeOpts{Name: "old_gauge", Help: "Old."})
	b := prometheus.NewGauge(prometheus.GaugeOpts{Name: "new_gauge", Help: "Native."})
	reg.MustRegister(a, b)
	a.Set(1)
	b.Set(2)
	g := New(reg, []Alias{{From: "old_gauge", To: "new_gauge"}})
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range fams {
		if f.GetName() == "new_gauge" {
			n++
			if v := f.GetMetric()[0].GetGauge().GetValue(); v != 2 {
				t.Fatalf("new_gauge = %v, want the native 2", v)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d families named new_gauge, want 1", n)
	}
}

func TestAliasSumsAwayLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	total := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "llmd_total", Help: "Requests."},
		[]string{"model_name", "fairness_id", "priority"})
	running := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "llmd_running", Help: "Running."},
		[]string{"model_name", "fairness_id"})
	sizes := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "llmd_sizes", Help: "Sizes.",
		Buckets: []float64{10, 100}}, []string{"model_name", "fairness_id"})
	reg.MustRegister(total, running, sizes)
	total.WithLabelValues("m1", "a", "0").Add(2)
	total.WithLabelValues("m1", "b", "0").Add(3)
	total.WithLabelValues("m1", "b", "1").Add(4)
	total.WithLabelValues("m2", "a", "0").Add(1)
	running.WithLabelValues("m1", "a").Set(1)
	running.WithLabelValues("m1", "b").Set(2)
	sizes.WithLabelValues("m1", "a").Observe(5)
	sizes.WithLabelValues("m1", "b").Observe(50)
	sizes.WithLabelValues("m1", "b").Observe(500)

	g := New(reg, []Alias{
		{From: "llmd_total", To: "gie_total", Sum: []string{"fairness_id"}},
		{From: "llmd_total", To: "by_source_total", Sum: []string{"model_name", "fairness_id", "priority"},
			Set: map[string]string{"source_type": "metrics"}},
		{From: "llmd_running", To: "gie_running", Sum: []string{"fairness_id"}},
		{From: "llmd_sizes", To: "gie_sizes", Sum: []string{"fairness_id"}},
	})
	want := `
# HELP gie_total Requests.
# TYPE gie_total counter
gie_total{model_name="m1",priority="0"} 5
gie_total{model_name="m1",priority="1"} 4
gie_total{model_name="m2",priority="0"} 1
# HELP by_source_total Requests.
# TYPE by_source_total counter
by_source_total{source_type="metrics"} 10
# HELP gie_running Running.
# TYPE gie_running gauge
gie_running{model_name="m1"} 3
# HELP gie_sizes Sizes.
# TYPE gie_sizes histogram
gie_sizes_bucket{model_name="m1",le="10"} 1
gie_sizes_bucket{model_name="m1",le="100"} 2
gie_sizes_bucket{model_name="m1",le="+Inf"} 3
gie_sizes_sum{model_name="m1"} 555
gie_sizes_count{model_name="m1"} 3
`
	if err := testutil.GatherAndCompare(g, strings.NewReader(want), "gie_total", "gie_running", "gie_sizes", "by_source_total"); err != nil {
		t.Fatal(err)
	}
	// Summing works on copies: the source still has its four series.
	if n := testutil.CollectAndCount(total); n != 4 {
		t.Fatalf("source has %d series after gathering, want 4", n)
	}
}

func TestAliasesOfSeveralFamiliesMerge(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scrape_errors_total", Help: "Scrape errors."}, []string{"reason"})
	b := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "poll_errors_total", Help: "Poll errors."}, []string{"reason"})
	reg.MustRegister(a, b)
	a.WithLabelValues("timeout").Add(2)
	b.WithLabelValues("parse").Add(3)
	g := New(reg, []Alias{
		{From: "scrape_errors_total", To: "datalayer_errors_total", Sum: []string{"reason"}, Set: map[string]string{"source_type": "metrics"}},
		{From: "poll_errors_total", To: "datalayer_errors_total", Sum: []string{"reason"}, Set: map[string]string{"source_type": "models"}},
	})
	want := `
# HELP datalayer_errors_total Poll errors.
# TYPE datalayer_errors_total counter
datalayer_errors_total{source_type="metrics"} 2
datalayer_errors_total{source_type="models"} 3
`
	if err := testutil.GatherAndCompare(g, strings.NewReader(want), "datalayer_errors_total"); err != nil {
		t.Fatal(err)
	}
}
