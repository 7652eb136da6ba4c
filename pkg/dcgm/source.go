package dcgm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/certfile"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/httppoll"
	"github.com/openepp/openepp/pkg/scheduler"
)

// SourceType is llm-d's type name of the DCGM Exporter source.
const SourceType = "dcgm-data-source"

const (
	// DefaultPort is the DCGM Exporter's port.
	DefaultPort = 9400
	// DefaultInterval is how often every exporter is polled: DCGM
	// refreshes its fields about once a second.
	DefaultInterval = time.Second
	// DefaultTimeout bounds one poll (connect, send, whole answer), at
	// most the interval.
	DefaultTimeout = time.Second
	// MaxPageBytes caps an answer; a larger one is a failed poll. An
	// exporter's page grows with its GPUs and fields: eight GPUs with the
	// default fields take about 100 KiB.
	MaxPageBytes = 4 << 20
	// dropAfter failed polls in a row drop the values of the exporter's
	// endpoints.
	dropAfter = 3
	// maxParallelPolls bounds the polls in flight.
	maxParallelPolls = 64
	// logEvery is how often at most an exporter's failures are logged.
	logEvery = time.Minute
)

// SourceParams are dcgm-data-source's parameters: llm-d's (scheme, path,
// port, insecureSkipVerify, useNodeAddress), plus the polling interval and
// timeout and the certificate files models-data-source takes.
type SourceParams struct {
	certfile.ClientParams
	Path           string `json:"path,omitempty" doc:"path of the DCGM Exporter's metrics page" default:"/metrics"`
	Port           *int   `json:"port,omitempty" doc:"port the DCGM Exporter listens on" default:"9400"`
	UseNodeAddress bool   `json:"useNodeAddress,omitempty" doc:"poll the exporter at the endpoint's node IP (a DaemonSet) rather than at the endpoint's own address (a sidecar); endpoints without a node address, such as static ones, are skipped" default:"false"`
	Interval       string `json:"interval,omitempty" doc:"how often every exporter is polled (OpenEPP); DCGM refreshes about once a second" default:"1s"`
	Timeout        string `json:"timeout,omitempty" doc:"bound on one poll (OpenEPP)" default:"1s or interval, the shorter"`
}

func (p *SourceParams) validate() error {
	errs := p.Problems()
	if p.Path != "" && p.Path[0] != '/' {
		errs = append(errs, fmt.Errorf("path: must start with /, got %q", p.Path))
	}
	if p.Port != nil && (*p.Port < 1 || *p.Port > 65535) {
		errs = append(errs, fmt.Errorf("port: must be 1-65535, got %d", *p.Port))
	}
	errs = append(errs, httppoll.DurationProblems(p.Interval, p.Timeout, "1s")...)
	return errors.Join(errs...)
}

// Source is the dcgm-data-source plugin: every interval it fetches each
// DCGM Exporter serving the pool's endpoints, GET
// <scheme>://<host>:<port><path>, parses the page and hands the families
// to its extractors (dataLayer.sources[].extractors), once for every
// endpoint on that exporter. An endpoint new to the pool is served within
// 250ms; up to 64 polls run at once, each exporter's independently of the
// others'. Without extractors, or without a pool to read, it does nothing.
type Source struct {
	name       scheduler.TypedName
	scheme     string
	path       string
	port       int
	useNode    bool
	transport  *http.Transport
	endpoints  func() []*endpoint.Endpoint
	clock      scheduler.Clock
	log        logr.Logger
	tel        *pollMetrics
	extractors []familyExtractor

	httppoll.Timing // interval and timeout, and SetInterval
}

var (
	_ scheduler.DataSource     = (*Source)(nil)
	_ scheduler.Runnable       = (*Source)(nil)
	_ scheduler.IntervalSource = (*Source)(nil) // by httppoll.Timing
)

// SourceFactory builds a Source from config; with https it reads the CA
// bundle and client key pair, if any, so that bad files fail the config.
func SourceFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	var p SourceParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	tel, err := newPollMetrics(h.MetricsRegisterer())
	if err != nil {
		return nil, err
	}
	s := &Source{name: scheduler.TypedName{Type: SourceType, Name: name}, scheme: "http", path: "/metrics",
		port: DefaultPort, useNode: p.UseNodeAddress, endpoints: h.Endpoints, clock: h.Clock, log: h.Log, tel: tel}
	if s.clock == nil {
		s.clock = scheduler.RealClock{}
	}
	s.Timing = httppoll.NewTiming(p.Interval, p.Timeout, DefaultInterval, DefaultTimeout)
	if p.Scheme != "" {
		s.scheme = p.Scheme
	}
	if p.Path != "" {
		s.path = p.Path
	}
	if p.Port != nil {
		s.port = *p.Port
	}
	s.transport, err = httppoll.NewTransport(p.ClientParams, s.Interval, s.Timeout, s.log.WithValues("use", "DCGM client certificate"))
	if err != nil {
		return nil, err
	}
	return s, nil
}

// SourceRegistration describes the plugin type for the registry.
func SourceRegistration() scheduler.Registration {
	return scheduler.Registration{Type: SourceType, Factory: SourceFactory, Params: SourceParams{},
		Summary: "Polls the NVIDIA DCGM Exporter of every endpoint (a sidecar, or with useNodeAddress the node's DaemonSet, fetched once per node) for its extractors. " +
			"A failed poll keeps the previous values, three in a row drop them; failures are counted in openepp_dcgm_poll_errors_total{reason}."}
}

// TypedName implements scheduler.Plugin.
func (s *Source) TypedName() scheduler.TypedName { return s.name }

// AddExtractor implements scheduler.DataSource: the extractor must read
// Prometheus metric families.
func (s *Source) AddExtractor(p scheduler.Plugin) error {
	x, ok := p.(familyExtractor)
	if !ok {
		return fmt.Errorf("%q cannot extract from %s: it does not read DCGM metrics (use %s)", p.TypedName().Name, SourceType, ExtractorType)
	}
	s.extractors = append(s.extractors, x)
	return nil
}

// Start implements scheduler.Runnable: it polls until ctx ends, then
// waits for the polls in flight and removes what its extractors published
// from the pool's endpoints.
func (s *Source) Start(ctx context.Context) error {
	if len(s.extractors) == 0 || s.endpoints == nil {
		<-ctx.Done()
		return nil
	}
	defer s.transport.CloseIdleConnections()
	p := s.newPoller()
	defer func() {
		p.wg.Wait()
		s.clear(s.endpoints())
	}()
	httppoll.Tick(ctx, s.Interval, func(now time.Time) { p.dispatch(ctx, now) })
	return nil
}

// clear has every extractor forget eps' values.
func (s *Source) clear(eps []*endpoint.Endpoint) {
	for _, ep := range eps {
		for _, x := range s.extractors {
			x.Clear(ep)
		}
	}
}
