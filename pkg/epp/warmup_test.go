package epp

import (
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/sim"
)

// TestMetricsWarmup: readiness waits for every endpoint's first scrape (a
// success or a recorded failure), at most the limit, and then stays.
func TestMetricsWarmup(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := endpoint.New(endpoint.Spec{Name: "a", Address: "10.0.0.1", Port: 8000})
	b := endpoint.New(endpoint.Spec{Name: "b", Address: "10.0.0.2", Port: 8000})
	eps := []*endpoint.Endpoint{a, b}
	var w metricsWarmup
	if w.done(t0, eps, 2*time.Second) {
		t.Fatal("warm before any scrape")
	}
	a.SetStale(false)
	if w.done(t0.Add(time.Second), eps, 2*time.Second) {
		t.Fatal("warm with b never scraped")
	}
	b.SetScrapeFailure(&endpoint.ScrapeFailure{Reason: "refused", Count: 1, Since: t0})
	if !w.done(t0.Add(time.Second), eps, 2*time.Second) {
		t.Fatal("not warm with a scraped and b's failure recorded")
	}
	a.SetStale(true)
	if !w.done(t0.Add(time.Hour), eps, 2*time.Second) {
		t.Error("warm-up came back")
	}

	var slow metricsWarmup
	c := endpoint.New(endpoint.Spec{Name: "c", Address: "10.0.0.3", Port: 8000})
	if slow.done(t0, []*endpoint.Endpoint{c}, 2*time.Second) || !slow.done(t0.Add(2*time.Second), []*endpoint.Endpoint{c}, 2*time.Second) {
		t.Error("the limit does not end a warm-up whose endpoint never answers")
	}
	var empty metricsWarmup
	if !empty.done(t0, nil, 2*time.Second) {
		t.Error("an empty pool waits")
	}
}

// TestReadyAfterTheFirstScrape: when the EPP reports ready, every server
// has been scraped (the first requests are routed and admitted on metrics),
// and a server that refuses its scrape does not hold readiness back past
// its recorded failure.
func TestReadyAfterTheFirstScrape(t *testing.T) {
	t.Parallel()
	slow := sim.Config{Faults: sim.Faults{MetricsDelay: 400 * time.Millisecond}} // answers its scrapes late
	r := launchEPPSims(t, []sim.Config{slow, slow}, 0, nil, func(r *running) []string {
		r.writeEndpoints(t, append(r.entries, "- {name: refused, address: 127.0.0.1, port: 1}\n")...)
		return []string{"--endpoints-file", r.file, "--metrics-staleness-threshold", "1m"}
	})
	var eps []endpointState
	r.debugJSON(t, endpointsPath, &eps)
	for _, e := range eps {
		if e.Name != "refused" && (e.Stale || e.AgeSeconds == nil) {
			t.Errorf("ready before %s was scraped: %+v", e.Name, e)
		}
	}
}
