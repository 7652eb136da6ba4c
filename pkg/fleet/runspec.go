package fleet

import (
	"errors"
	"fmt"
	"time"
)

// Defaults of RunSpec.
const (
	// DefaultScrapeInterval is the upstream EPP's metrics refresh interval.
	DefaultScrapeInterval = 50 * time.Millisecond
	// DefaultScrapeJitter spreads each scrape uniformly by ± this much.
	DefaultScrapeJitter = 5 * time.Millisecond
	// DefaultTimeout is how long a client waits for a whole response.
	DefaultTimeout = 300 * time.Second
)

// RunSpec is one simulation: one policy on one workload at one QPS.
type RunSpec struct {
	Workload Workload
	Policy   Policy
	QPS      float64
	// Seed fixes the arrival trace, the prompts and every random choice;
	// equal specs give equal results.
	Seed uint64
	// ScrapeInterval and ScrapeJitter model the metrics scraper; zero
	// values take the defaults, a negative jitter disables it.
	ScrapeInterval, ScrapeJitter time.Duration
	// Timeout cancels a request this long after it arrived; 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// Retry makes clients send an evicted request again (retry.go).
	Retry Retry
	// Classes, when set, splits the requests into classes of priority and
	// fairness ID (shares are normalised) and reports each class.
	Classes []Class
	// PrefillServers labels the first K servers llm-d.ai/role: prefill and
	// the others decode, for P/D disaggregation (disagg.go); 0 labels none.
	// Only configs with role filters heed the labels.
	PrefillServers int
	// PrefillTimeout is how long a decode sidecar waits for a remote
	// prefill before it prefills locally; 0 means DefaultPrefillTimeout.
	PrefillTimeout time.Duration
	// Replication runs the policy as several EPP replicas sharing the
	// traffic, with or without replica sync (replicas.go).
	Replication
	// Topology places the servers on nodes (topology.go).
	Topology
}

func (s RunSpec) withDefaults() RunSpec {
	out := s
	if out.ScrapeInterval == 0 {
		out.ScrapeInterval = DefaultScrapeInterval
	}
	if out.ScrapeJitter == 0 {
		out.ScrapeJitter = DefaultScrapeJitter
	}
	out.ScrapeJitter = max(out.ScrapeJitter, 0)
	if out.Timeout == 0 {
		out.Timeout = DefaultTimeout
	}
	if out.PrefillTimeout == 0 {
		out.PrefillTimeout = DefaultPrefillTimeout
	}
	out.Replication = out.Replication.withDefaults()
	out.Retry = out.Retry.withDefaults()
	if len(out.Classes) > 0 && validateClasses(out.Classes) == nil {
		out.Classes = normalised(out.Classes)
	}
	return out
}

func (s *RunSpec) validate() error {
	var errs []error
	if err := s.Workload.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("workload %q: %w", s.Workload.Name, err))
	}
	if err := s.Policy.validate(); err != nil {
		errs = append(errs, err)
	}
	if !(s.QPS > 0 && s.QPS <= maxQPS) {
		errs = append(errs, fmt.Errorf("qps: must be in (0, %g], got %v", maxQPS, s.QPS))
	}
	if s.ScrapeInterval < time.Millisecond || s.ScrapeInterval > time.Minute {
		errs = append(errs, fmt.Errorf("scrape interval: must be in [1ms, 1m], got %s", s.ScrapeInterval))
	}
	if s.ScrapeJitter >= s.ScrapeInterval {
		errs = append(errs, fmt.Errorf("scrape jitter %s: must be below the interval %s", s.ScrapeJitter, s.ScrapeInterval))
	}
	if s.Timeout < 0 || s.Timeout > maxDuration {
		errs = append(errs, fmt.Errorf("timeout: must be in [0, %s], got %s", maxDuration, s.Timeout))
	}
	if err := s.Replication.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := s.Retry.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := s.Topology.validate(s.Workload.Servers); err != nil {
		errs = append(errs, err)
	}
	if err := validateClasses(s.Classes); err != nil {
		errs = append(errs, err)
	}
	if s.PrefillServers < 0 || s.PrefillServers >= max(s.Workload.Servers, 1) {
		errs = append(errs, fmt.Errorf("prefill servers: must be in [0, %d) (some servers must decode), got %d",
			max(s.Workload.Servers, 1), s.PrefillServers))
	}
	if s.PrefillTimeout < 0 || s.PrefillTimeout > maxDuration {
		errs = append(errs, fmt.Errorf("prefill timeout: must be in [0, %s], got %s", maxDuration, s.PrefillTimeout))
	}
	return errors.Join(errs...)
}
