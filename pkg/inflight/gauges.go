package inflight

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/endpoint"
)

// llm-d's in-flight load gauges (no GIE equivalent).
var (
	requestsDesc = prometheus.NewDesc("llm_d_epp_inflight_requests",
		"Requests this EPP has sent to each endpoint and not yet seen finish, by the in-flight load producer keeping the books.",
		[]string{"endpoint_name", "namespace", "producer_name"}, nil)
	tokensDesc = prometheus.NewDesc("llm_d_epp_inflight_tokens",
		"Tokens in flight on each endpoint as the producer weighs them (prompt tokens not yet prefilled, plus output estimates when configured).",
		[]string{"endpoint_name", "namespace", "producer_name"}, nil)
)

// LoadGauges serves the books of the producers added to it as llm-d's
// in-flight gauges, read when the page is gathered (nothing is observed on
// the request path): one series per endpoint of the pool and producer,
// idle endpoints at 0. Unlike llm-d's, the series have no fairness_id or
// priority labels (the books do not split by them).
type LoadGauges struct {
	mu      sync.Mutex
	sources map[string]loadSource // by producer name
}

type loadSource struct {
	owner any // the plugin instance that added it
	books *Tracker
	pool  func() []*endpoint.Endpoint
}

// NewLoadGauges returns gauges with no books yet; register them with
// promreg.Shared, so every producer of a registry shares one collector.
func NewLoadGauges() *LoadGauges { return &LoadGauges{sources: map[string]loadSource{}} }

// Add serves books as producer's, over the endpoints pool returns, until
// Remove by the same owner; a later Add for the same producer (a reloaded
// instance) replaces it.
func (g *LoadGauges) Add(producer string, owner any, books *Tracker, pool func() []*endpoint.Endpoint) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sources[producer] = loadSource{owner: owner, books: books, pool: pool}
}

// Remove stops serving producer's books if owner added them (not when a
// newer instance has replaced them since).
func (g *LoadGauges) Remove(producer string, owner any) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.sources[producer].owner == owner {
		delete(g.sources, producer)
	}
}

// Describe implements prometheus.Collector.
func (g *LoadGauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- requestsDesc
	ch <- tokensDesc
}

// Collect implements prometheus.Collector.
func (g *LoadGauges) Collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	sources := make(map[string]loadSource, len(g.sources))
	for name, s := range g.sources {
		sources[name] = s
	}
	g.mu.Unlock()
	for name, s := range sources {
		s.books.Each(s.pool(), func(e *endpoint.Endpoint, requests, tokens int) {
			ch <- prometheus.MustNewConstMetric(requestsDesc, prometheus.GaugeValue, float64(requests), e.Name, e.Namespace, name)
			ch <- prometheus.MustNewConstMetric(tokensDesc, prometheus.GaugeValue, float64(tokens), e.Name, e.Namespace, name)
		})
	}
}
