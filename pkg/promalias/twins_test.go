package promalias

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestTwinsCopyFamiliesUnderAnotherPrefix(t *testing.T) {
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "new_request_total", Help: "Requests."}, []string{"model_name"})
	decisions := prometheus.NewCounter(prometheus.CounterOpts{Name: "new_decision_total", Help: "Decisions."})
	native := prometheus.NewGauge(prometheus.GaugeOpts{Name: "old_decision_total", Help: "Already served."})
	other := prometheus.NewGauge(prometheus.GaugeOpts{Name: "unrelated", Help: "No prefix."})
	reg.MustRegister(requests, decisions, native, other)
	requests.WithLabelValues("m").Add(2)
	decisions.Inc()

	g := NewTwins(New(reg, []Alias{{From: "unrelated", To: "new_unrelated"}}),
		Twins{From: "new_", To: "old_"},
		Twins{From: "new_", To: "older_", Only: []string{"decision_total"}})
	want := `
# HELP new_decision_total Decisions.
# TYPE new_decision_total counter
new_decision_total 1
# HELP new_request_total Requests.
# TYPE new_request_total counter
new_request_total{model_name="m"} 2
# HELP new_unrelated No prefix.
# TYPE new_unrelated gauge
new_unrelated 0
# HELP old_decision_total Already served.
# TYPE old_decision_total gauge
old_decision_total 0
# HELP old_request_total Requests.
# TYPE old_request_total counter
old_request_total{model_name="m"} 2
# HELP old_unrelated No prefix.
# TYPE old_unrelated gauge
old_unrelated 0
# HELP older_decision_total Decisions.
# TYPE older_decision_total counter
older_decision_total 1
# HELP unrelated No prefix.
# TYPE unrelated gauge
unrelated 0
`
	if err := testutil.GatherAndCompare(g, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}
