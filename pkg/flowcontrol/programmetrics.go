package flowcontrol

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// programSeriesLimit bounds the flows given series of their own, most
// served first, as llm-d caps fairness_id label values.
const programSeriesLimit = 1000

// llm-d's program-aware fairness gauges.
var (
	jainDesc = prometheus.NewDesc("llm_d_epp_program_aware_jains_fairness_index",
		"Jain's fairness index over the flows' attained service (1: every flow got the same), by policy.", []string{"plugin_name"}, nil)
	programWaitDesc = prometheus.NewDesc("llm_d_epp_program_aware_avg_wait_time_milliseconds",
		"Moving average of a flow's requests' waits in flow control, in milliseconds.", []string{"plugin_name", "program_id"}, nil)
	programServiceDesc = prometheus.NewDesc("llm_d_epp_program_aware_attained_service_tokens",
		"A flow's attained service (uncached prompt plus output tokens, decayed), as the policy ranks flows by it.",
		[]string{"plugin_name", "program_id"}, nil)
)

// ProgramGauges serves the accounts of the program-aware policies built
// for a registry, read when the page is gathered: Jain's index per policy
// and, for the 1,000 most served flows, their service and mean wait. A
// policy rebuilt by a reload replaces its predecessor (they share the
// ledger); one dropped by a reload keeps its last values.
type ProgramGauges struct {
	mu       sync.Mutex
	policies map[string]*ProgramAware
}

// NewProgramGauges returns gauges with no policy yet; register them with
// promreg.Shared.
func NewProgramGauges() *ProgramGauges { return &ProgramGauges{policies: map[string]*ProgramAware{}} }

// Add serves pa's accounts under its name.
func (g *ProgramGauges) Add(pa *ProgramAware) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.policies[pa.name.Name] = pa
}

// Describe implements prometheus.Collector.
func (g *ProgramGauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- jainDesc
	ch <- programWaitDesc
	ch <- programServiceDesc
}

// Collect implements prometheus.Collector.
func (g *ProgramGauges) Collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	policies := make([]*ProgramAware, 0, len(g.policies))
	for _, pa := range g.policies {
		policies = append(policies, pa)
	}
	g.mu.Unlock()
	for _, pa := range policies {
		rows, jain := pa.accounts()
		name := pa.name.Name
		ch <- prometheus.MustNewConstMetric(jainDesc, prometheus.GaugeValue, jain, name)
		for _, r := range rows[:min(len(rows), programSeriesLimit)] {
			ch <- prometheus.MustNewConstMetric(programServiceDesc, prometheus.GaugeValue, r.Service, name, r.Flow)
			ch <- prometheus.MustNewConstMetric(programWaitDesc, prometheus.GaugeValue, r.WaitMs, name, r.Flow)
		}
	}
}
