package models

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/certfile"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/fetchfail"
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
	// maxTick is how often at most the source looks for endpoints due
	// for a poll, so one new to the pool is polled within it.
	maxTick = 250 * time.Millisecond
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
	for _, d := range []struct{ name, v string }{{"interval", p.Interval}, {"timeout", p.Timeout}} {
		if d.v == "" {
			continue
		}
		if v, err := time.ParseDuration(d.v); err != nil || v <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be a positive duration such as 5s, got %q", d.name, d.v))
		}
	}
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
	interval   time.Duration
	timeout    time.Duration
	timeoutSet bool // the timeout parameter was given: an interval leaves it
	maxBytes   int64
	client     *http.Client
	transport  *http.Transport
	endpoints  func() []*endpoint.Endpoint
	clock      scheduler.Clock
	log        logr.Logger
	tel        *pollMetrics
	extractors []listExtractor
	apiKey     *apiKey // nil: polls carry no credentials
}

var (
	_ scheduler.DataSource = (*Source)(nil)
	_ scheduler.Runnable   = (*Source)(nil)
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
	s := &Source{name: scheduler.TypedName{Type: SourceType, Name: name}, interval: DefaultInterval,
		maxBytes: MaxListBytes, endpoints: h.Endpoints, clock: h.Clock, log: h.Log, tel: tel}
	if s.clock == nil {
		s.clock = scheduler.RealClock{}
	}
	if p.Interval != "" {
		s.interval, _ = time.ParseDuration(p.Interval) // validated
	}
	s.timeout = min(DefaultTimeout, s.interval)
	if p.Timeout != "" {
		s.timeout, _ = time.ParseDuration(p.Timeout)
		s.timeoutSet = true
	}
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
	if err := s.newClient(scheme, p); err != nil {
		return nil, err
	}
	return s, nil
}

// newClient prepares the HTTP client; for https it reads the certificate
// files as the metrics scraper does (certfile).
func (s *Source) newClient(scheme string, p SourceParams) error {
	s.transport = &http.Transport{
		Proxy:               nil, // model servers are reached directly, never through $HTTP_PROXY
		DialContext:         (&net.Dialer{Timeout: s.timeout}).DialContext,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     2 * s.interval,
	}
	if scheme == "https" {
		cfg, err := p.Client().TLSConfig(s.log.WithValues("use", "model list client certificate"))
		if err != nil {
			return err
		}
		s.transport.TLSClientConfig = cfg
	}
	s.client = &http.Client{Transport: s.transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return nil
}

// SourceRegistration describes the plugin type for the registry.
func SourceRegistration() scheduler.Registration {
	return scheduler.Registration{Type: SourceType, Factory: SourceFactory, Params: SourceParams{},
		Summary: "Polls every endpoint's OpenAI model list (GET /v1/models) for its extractors; models-responder adds one when none is listed. " +
			"A failed poll keeps the previous list, three in a row drop it; failures are counted in openepp_models_poll_errors_total{reason}."}
}

// TypedName implements scheduler.Plugin.
func (s *Source) TypedName() scheduler.TypedName { return s.name }

// SetInterval implements scheduler.IntervalSource: the polling interval of
// the source's dataLayer.sources entry (llm-d's), as the interval parameter.
func (s *Source) SetInterval(d time.Duration) {
	s.interval = d
	if !s.timeoutSet {
		s.timeout = min(DefaultTimeout, d)
	}
}

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
	tick := time.NewTicker(min(s.interval, maxTick))
	defer tick.Stop()
	for {
		p.dispatch(ctx, time.Now())
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// poller tracks when each endpoint is due. Every tick it starts the polls
// that are due, each on a goroutine of its own, so a server that hangs
// delays nobody else; an endpoint new to the pool is due at once.
type poller struct {
	s      *Source
	states map[string]*pollState // owned by the loop
	slots  chan struct{}         // polls in flight, at most maxParallelPolls
	wg     sync.WaitGroup
}

// pollState is one endpoint's schedule and run of failures. next is the
// loop's; failures and reason belong to the endpoint's poll while busy.
type pollState struct {
	next     time.Time
	busy     atomic.Bool
	failures int
	reason   string
}

func (s *Source) newPoller() *poller {
	return &poller{s: s, states: map[string]*pollState{}, slots: make(chan struct{}, maxParallelPolls)}
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
		if st.busy.Load() || now.Before(st.next) {
			continue
		}
		select {
		case p.slots <- struct{}{}:
		default:
			continue
		}
		st.next = now.Add(p.s.interval)
		st.busy.Store(true)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.s.poll(ctx, ep, st)
			st.busy.Store(false)
			<-p.slots
		}()
	}
	for name, st := range p.states {
		if !live[name] && !st.busy.Load() {
			delete(p.states, name)
		}
	}
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

// fetch GETs the list, bounded by the timeout and maxBytes.
func (s *Source) fetch(ctx context.Context, ep *endpoint.Endpoint) ([]byte, string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url(ep), nil)
	if err != nil {
		return nil, fetchfail.Connect, err
	}
	req.Header.Set("Accept", "application/json")
	if s.apiKey != nil {
		key, err := s.apiKey.value()
		if err != nil {
			return nil, fetchfail.Connect, fmt.Errorf("apiKeyFile: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fetchfail.Classify(err, fetchfail.Connect), err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // so the connection can be reused
		return nil, fetchfail.Status, fmt.Errorf("GET %s: status %d", req.URL.Path, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, s.maxBytes+1))
	if err != nil {
		return nil, fetchfail.Classify(err, fetchfail.Read), fmt.Errorf("read model list: %w", err)
	}
	if int64(len(body)) > s.maxBytes {
		return nil, fetchfail.TooLarge, fmt.Errorf("model list exceeds %d bytes", s.maxBytes)
	}
	return body, "", nil
}
