package models

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/certfile"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/fetchfail"
	"github.com/openepp/openepp/pkg/httppoll"
	"github.com/openepp/openepp/pkg/scheduler"
)

// SourceType is llm-d's type name of the model-list source.
const SourceType = "models-data-source"

const (
	// DefaultInterval is how often each endpoint's list is polled. Lists
	// change only when an adapter is loaded or unloaded or a server
	// restarts, so a few seconds of delay cost little (an adapter loaded
	// since the last poll is missing from /v1/models, and screening may keep
	// its server out for that long), while a poll is a cheap GET with a
	// small answer: 1,000 endpoints cost 200 requests/s.
	DefaultInterval = 5 * time.Second
	// DefaultTimeout bounds one poll (connect, send, whole answer), at
	// most the interval.
	DefaultTimeout = 2 * time.Second
	// MaxListBytes caps an answer; a larger one is a failed poll (about
	// 5,000 entries of vLLM's size fit).
	MaxListBytes = 1 << 20
	// dropAfter failed polls in a row drop the endpoint's list.
	dropAfter = 3
	// maxParallelPolls bounds the polls in flight.
	maxParallelPolls = 64
)

// SourceParams are models-data-source's parameters: llm-d's, plus the
// polling interval and timeout.
type SourceParams struct {
	certfile.ClientParams
	Path     string `json:"path,omitempty" doc:"path of the OpenAI model list on every endpoint's serving port" default:"/v1/models"`
	Interval string `json:"interval,omitempty" doc:"how often every endpoint is polled (OpenEPP); lists change rarely, so seconds suffice" default:"5s"`
	Timeout  string `json:"timeout,omitempty" doc:"bound on one poll (OpenEPP)" default:"2s or interval, the shorter"`
	// APIKeyFile serves model servers that require an API key: without it
	// every poll is refused with 401 and no list is ever collected.
	APIKeyFile string `json:"apiKeyFile,omitempty" doc:"file holding the API key the model servers were started with (vLLM --api-key), sent as a bearer token with every poll and read again when the file changes; empty: none (OpenEPP)" default:""`
}

func (p *SourceParams) validate() error {
	errs := p.Problems()
	if p.Path != "" && p.Path[0] != '/' {
		errs = append(errs, fmt.Errorf("path: must start with /, got %q", p.Path))
	}
	errs = append(errs, httppoll.DurationProblems(p.Interval, p.Timeout, "5s")...)
	return errors.Join(errs...)
}

// Source is the models-data-source plugin: every interval it fetches each
// endpoint's model list, GET <scheme>://<address>:<port><path>, and hands
// the answer to its extractors (dataLayer.sources[].extractors). An
// endpoint new to the pool is polled within 250ms; up to 64 polls run at
// once, each endpoint's independently of the others'. Without extractors,
// or without a pool to read, it does nothing.
type Source struct {
	name       scheduler.TypedName
	url        func(ep *endpoint.Endpoint) string
	transport  *http.Transport
	endpoints  func() []*endpoint.Endpoint
	clock      scheduler.Clock
	log        logr.Logger
	tel        *pollMetrics
	extractors []listExtractor
	apiKey     *apiKey // nil: polls carry no credentials

	httppoll.Timing // interval and timeout, and SetInterval
}

var (
	_ scheduler.DataSource     = (*Source)(nil)
	_ scheduler.Runnable       = (*Source)(nil)
	_ scheduler.IntervalSource = (*Source)(nil) // by httppoll.Timing
)

// SourceFactory builds a Source from config; it reads the CA bundle and
// client key pair, if any, so that bad files fail the config.
func SourceFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	var p SourceParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	tel, err := newPollMetrics(h.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Source{name: scheduler.TypedName{Type: SourceType, Name: name}, endpoints: h.Endpoints, clock: h.Clock, log: h.Log, tel: tel}
	if s.clock == nil {
		s.clock = scheduler.RealClock{}
	}
	s.Timing = httppoll.NewTiming(p.Interval, p.Timeout, DefaultInterval, DefaultTimeout)
	scheme, path := "http", "/v1/models"
	if p.Scheme != "" {
		scheme = p.Scheme
	}
	if p.Path != "" {
		path = p.Path
	}
	s.url = func(ep *endpoint.Endpoint) string { return scheme + "://" + ep.HostPort + path }
	if p.APIKeyFile != "" {
		if s.apiKey, err = newAPIKey(p.APIKeyFile); err != nil {
			return nil, err
		}
	}
	s.transport, err = httppoll.NewTransport(p.ClientParams, s.Interval, s.Timeout, s.log.WithValues("use", "model list client certificate"))
	if err != nil {
		return nil, err
	}
	return s, nil
}

// SourceRegistration describes the plugin type for the registry.
func SourceRegistration() scheduler.Registration {
	return scheduler.Registration{Type: SourceType, Factory: SourceFactory, Params: SourceParams{},
		Summary: "Polls every endpoint's OpenAI model list (GET /v1/models) for its extractors; models-responder adds one when none is listed. " +
			"A failed poll keeps the previous list, three in a row drop it; failures are counted in openepp_models_poll_errors_total{reason}."}
}

// TypedName implements scheduler.Plugin.
func (s *Source) TypedName() scheduler.TypedName { return s.name }

// AddExtractor implements scheduler.DataSource: the extractor must read
// model lists.
func (s *Source) AddExtractor(p scheduler.Plugin) error {
	x, ok := p.(listExtractor)
	if !ok {
		return fmt.Errorf("%q cannot extract from %s: it does not read model lists (use %s)", p.TypedName().Name, SourceType, ExtractorType)
	}
	s.extractors = append(s.extractors, x)
	return nil
}

// Start implements scheduler.Runnable: it polls until ctx ends.
func (s *Source) Start(ctx context.Context) error {
	if len(s.extractors) == 0 || s.endpoints == nil {
		<-ctx.Done()
		return nil
	}
	defer s.transport.CloseIdleConnections()
	p := s.newPoller()
	defer p.wg.Wait()
	httppoll.Tick(ctx, s.Interval, func(now time.Time) { p.dispatch(ctx, now) })
	return nil
}

// poller tracks when each endpoint is due. Every tick it starts the polls
// that are due, each on a goroutine of its own, so a server that hangs
// delays nobody else; an endpoint new to the pool is due at once.
type poller struct {
	s      *Source
	states map[string]*pollState // owned by the loop
	slots  httppoll.Slots        // polls in flight, at most maxParallelPolls
	wg     sync.WaitGroup
}

// pollState is one endpoint's schedule and run of failures; failures and
// reason belong to the endpoint's poll while busy.
type pollState struct {
	httppoll.Turn
	failures int
	reason   string
}

func (s *Source) newPoller() *poller {
	return &poller{s: s, states: map[string]*pollState{}, slots: httppoll.NewSlots(maxParallelPolls)}
}

// dispatch starts the polls due at now (while slots are free; the rest
// wait for the next tick) and forgets endpoints that left the pool.
func (p *poller) dispatch(ctx context.Context, now time.Time) {
	eps := p.s.endpoints()
	live := make(map[string]bool, len(eps))
	for _, ep := range eps {
		live[ep.Name] = true
		st := p.states[ep.Name]
		if st == nil {
			st = &pollState{}
			p.states[ep.Name] = st
		}
		if !p.slots.Claim(&st.Turn, now, p.s.Interval) {
			continue
		}
		p.wg.Go(func() {
			defer p.slots.Release(&st.Turn)
			p.s.poll(ctx, ep, st)
		})
	}
	httppoll.Forget(p.states, live)
}

// poll fetches and extracts one endpoint's list and judges the outcome.
func (s *Source) poll(ctx context.Context, ep *endpoint.Endpoint, st *pollState) {
	body, reason, err := s.fetch(ctx, ep)
	if err == nil {
		now := s.clock.Now()
		for _, x := range s.extractors {
			if err = x.Extract(ep, body, now); err != nil {
				reason = fetchfail.Parse
				break
			}
		}
	}
	if ctx.Err() != nil {
		return // shutting down or replaced: not the server's fault
	}
	s.tel.polled(reason)
	if err == nil {
		if st.failures > 0 {
			s.log.V(1).Info("model list readable again", "endpoint", ep.Name, "failedPolls", st.failures)
		}
		st.failures, st.reason = 0, ""
		return
	}
	st.failures++
	if reason != st.reason {
		st.reason = reason
		s.log.V(1).Info("cannot read model list", "endpoint", ep.Name, "reason", reason, "err", err.Error())
	}
	if st.failures == dropAfter {
		had := ep.Models() != nil
		for _, x := range s.extractors {
			x.Clear(ep)
		}
		if had {
			s.log.V(1).Info("model list dropped", "endpoint", ep.Name, "failedPolls", st.failures)
		}
	}
}

// fetch GETs the list, bounded by the timeout and MaxListBytes.
func (s *Source) fetch(ctx context.Context, ep *endpoint.Endpoint) ([]byte, string, error) {
	return httppoll.Get(ctx, s.transport, httppoll.Request{URL: s.url(ep), Timeout: s.Timeout, MaxBytes: MaxListBytes,
		Name: "model list", Header: s.header})
}

// header asks for JSON and, with an API key, presents it.
func (s *Source) header(h http.Header) error {
	h.Set("Accept", "application/json")
	if s.apiKey != nil {
		key, err := s.apiKey.value()
		if err != nil {
			return fmt.Errorf("apiKeyFile: %w", err)
		}
		h.Set("Authorization", "Bearer "+key)
	}
	return nil
}
