// Package scheduler is the plugin framework: the extension-point interfaces,
// per-request state, the plugin registry, profiles (filter → score → pick)
// and the Scheduler that runs them and dispatches request-lifecycle hooks.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
)

// Options configures a Scheduler.
type Options struct {
	Handler  ProfileHandler
	Profiles []*Profile
	// Plugins lists every plugin instance of the configuration, including
	// those used in profiles; screeners, responders, fairness sources,
	// producers, admitters and lifecycle hooks are discovered among them by
	// type, in this order.
	Plugins []Plugin
	// SaturationDetector, if set, sheds sheddable requests (priority < 0)
	// while it rates the candidates saturated (see SaturationDetector).
	SaturationDetector SaturationDetector
	// Timer, if set, is told how long every plugin call took.
	Timer PluginTimer
	// Seed makes every request's State.Rand reproducible; 0 picks a random
	// seed.
	Seed  uint64
	Clock Clock
}

// Scheduler runs the configured profiles for each request. It is safe for
// concurrent use and immutable after New; a config reload builds a new one.
type Scheduler struct {
	handler    ProfileHandler
	profiles   map[string]*Profile
	plugins    []Plugin
	screeners  []Screener
	responders []Responder
	fairness   []FairnessSource
	attributes []AttributeSource
	producers  []Producer
	admitters  []Admitter
	preReq     []PreRequest
	respHdr    []ResponseHeaders
	respChunk  []ResponseChunk
	respDone   []ResponseComplete
	reporters  []ResponseReporter
	detector   SaturationDetector
	timing     timing
	clock      Clock
	seed       uint64
	seq        atomic.Uint64
}

// New validates opts and returns a Scheduler.
func New(opts Options) (*Scheduler, error) {
	if opts.Handler == nil {
		return nil, errors.New("scheduler: a profile handler is required")
	}
	if len(opts.Profiles) == 0 {
		return nil, errors.New("scheduler: at least one profile is required")
	}
	s := &Scheduler{handler: opts.Handler, profiles: map[string]*Profile{}, plugins: opts.Plugins,
		detector: opts.SaturationDetector, timing: timing{opts.Timer}, clock: opts.Clock, seed: opts.Seed}
	for _, p := range opts.Profiles {
		if p.Picker == nil {
			return nil, fmt.Errorf("scheduler: profile %q has no picker", p.Name)
		}
		if _, dup := s.profiles[p.Name]; dup {
			return nil, fmt.Errorf("scheduler: duplicate profile %q", p.Name)
		}
		s.profiles[p.Name] = p
		p.timing = s.timing // profiles belong to the scheduler built with them
	}
	if err := s.checkProfileUsers(opts.Handler); err != nil {
		return nil, err
	}
	if s.clock == nil {
		s.clock = RealClock{}
	}
	if s.seed == 0 {
		s.seed = rand.Uint64() | 1
	}
	s.collectHooks()
	return s, nil
}

// checkProfileUsers makes sure that the profiles the handler and the other
// plugins refer to by name exist.
func (s *Scheduler) checkProfileUsers(handler ProfileHandler) error {
	var names []string
	for name := range s.profiles {
		names = append(names, name)
	}
	slices.Sort(names)
	users := append([]Plugin{handler}, s.plugins...)
	for i, p := range users {
		if i > 0 && p.TypedName() == handler.TypedName() {
			continue // the handler is usually among the plugins too
		}
		what := "plugin"
		if i == 0 {
			what = "profile handler"
		}
		if u, ok := p.(ProfileUser); ok {
			for _, name := range u.RequiredProfiles() {
				if _, ok := s.profiles[name]; !ok {
					return fmt.Errorf("scheduler: %s %s needs a profile named %q", what, p.TypedName(), name)
				}
			}
		}
		if c, ok := p.(ProfileChecker); ok {
			if err := c.CheckProfiles(slices.Clone(names)); err != nil {
				return fmt.Errorf("scheduler: %s %s: %w", what, p.TypedName(), err)
			}
		}
	}
	return nil
}

func (s *Scheduler) collectHooks() {
	for _, p := range s.plugins {
		if x, ok := p.(Screener); ok {
			s.screeners = append(s.screeners, x)
		}
		if x, ok := p.(Responder); ok {
			s.responders = append(s.responders, x)
		}
		if x, ok := p.(FairnessSource); ok {
			s.fairness = append(s.fairness, x)
		}
		if x, ok := p.(AttributeSource); ok {
			s.attributes = append(s.attributes, x)
		}
		if x, ok := p.(Producer); ok {
			s.producers = append(s.producers, x)
		}
		if x, ok := p.(Admitter); ok {
			s.admitters = append(s.admitters, x)
		}
		if x, ok := p.(PreRequest); ok {
			s.preReq = append(s.preReq, x)
		}
		if x, ok := p.(ResponseHeaders); ok {
			s.respHdr = append(s.respHdr, x)
		}
		if x, ok := p.(ResponseChunk); ok {
			s.respChunk = append(s.respChunk, x)
		}
		if x, ok := p.(ResponseComplete); ok {
			s.respDone = append(s.respDone, x)
		}
		if x, ok := p.(ResponseReporter); ok {
			s.reporters = append(s.reporters, x)
		}
	}
}

// Plugins returns every plugin instance of this scheduler.
func (s *Scheduler) Plugins() []Plugin { return s.plugins }

// Profiles returns the profiles sorted by name.
func (s *Scheduler) Profiles() []*Profile {
	out := make([]*Profile, 0, len(s.profiles))
	for _, p := range s.profiles {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *Profile) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// NewState returns fresh per-request state with a reproducible random source.
func (s *Scheduler) NewState() *State {
	return NewState(s.seed+s.seq.Add(1)*0x9e3779b97f4a7c15, s.clock.Now())
}

// Now reads the scheduler's clock, as NewState stamps a state.
func (s *Scheduler) Now() time.Time { return s.clock.Now() }

// SaturationDetector returns the detector driving legacy admission, or nil.
func (s *Scheduler) SaturationDetector() SaturationDetector { return s.detector }

// Schedule picks targets for req among candidates. It narrows them with
// the screeners, sheds a sheddable request when they are saturated, then
// runs producers, admitters, and profiles as the handler directs. Errors
// wrap ErrNoCandidates (nothing can serve) or ErrRejected (shed because of
// load).
func (s *Scheduler) Schedule(ctx context.Context, state *State, req *Request, candidates []*endpoint.Endpoint) (*Result, error) {
	if len(candidates) == 0 {
		return nil, ErrNoCandidates
	}
	for _, sc := range s.screeners {
		t := s.timing.start()
		candidates = sc.Screen(ctx, state, req, candidates)
		s.timing.done(PointScreen, sc, t)
		if len(candidates) == 0 {
			return nil, fmt.Errorf("screener %s left no endpoint for model %q: %w", sc.TypedName(), req.Model, ErrNoCandidates)
		}
	}
	if req.Priority < 0 && s.detector != nil {
		if sat := s.detector.Saturation(candidates, state.Now); sat >= 1 {
			return nil, &ShedError{Priority: req.Priority, Saturation: sat, Detector: s.detector.TypedName()}
		}
	}
	// Producers run before admitters, as upstream orders them, so an
	// admitter can judge by what they found (latency-slo-admitter reads the
	// predicted latencies).
	for _, p := range s.producers {
		t := s.timing.start()
		p.Produce(ctx, state, req, candidates)
		s.timing.done(PointPrepareData, p, t)
	}
	for _, a := range s.admitters {
		t := s.timing.start()
		err := a.Admit(ctx, state, req, candidates)
		s.timing.done(PointAdmitRequest, a, t)
		if err != nil {
			return nil, fmt.Errorf("admission %s: %w", a.TypedName(), err)
		}
	}
	results := make(map[string]*ProfileResult, len(s.profiles))
	var firstErr error
	for {
		t := s.timing.start()
		next := s.handler.Pick(ctx, state, req, s.profiles, results)
		s.timing.done(PointProfilePicker, s.handler, t)
		if len(next) == 0 {
			break
		}
		for _, p := range next {
			res, err := p.Run(ctx, state, req, candidates)
			results[p.Name] = res
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}
	}
	t := s.timing.start()
	result, err := s.handler.ProcessResults(ctx, state, req, results)
	s.timing.done(PointProcessResults, s.handler, t)
	if err != nil {
		if firstErr != nil && !errors.Is(err, firstErr) {
			return nil, fmt.Errorf("%w: %w", err, firstErr)
		}
		return nil, err
	}
	if len(result.Targets()) == 0 {
		if firstErr != nil {
			return nil, firstErr
		}
		return nil, fmt.Errorf("primary profile %q produced no target: %w", result.Primary, ErrNoCandidates)
	}
	return result, nil
}

// Responds reports whether any plugin may answer requests itself, so the
// server can skip asking (and taking a pool snapshot) when none does.
func (s *Scheduler) Responds() bool { return len(s.responders) > 0 }

// Respond asks the responders, in order, whether one answers in itself;
// the first that does wins.
func (s *Scheduler) Respond(ctx context.Context, in *Inbound, endpoints []*endpoint.Endpoint) (Reply, bool) {
	for _, r := range s.responders {
		t := s.timing.start()
		reply, ok := r.Respond(ctx, in, endpoints)
		s.timing.done(PointRespond, r, t)
		if ok {
			return reply, true
		}
	}
	return Reply{}, false
}

// FairnessID asks the fairness sources, in order, for the fairness ID of a
// request with headers; the first non-empty answer wins, and "" means none
// gave one (or none is configured).
func (s *Scheduler) FairnessID(ctx context.Context, headers map[string]string) string {
	for _, f := range s.fairness {
		t := s.timing.start()
		id := f.FairnessID(ctx, headers)
		s.timing.done(PointFairnessID, f, t)
		if id != "" {
			return id
		}
	}
	return ""
}

// PreRequest runs the PreRequest hooks.
func (s *Scheduler) PreRequest(ctx context.Context, state *State, req *Request, result *Result) {
	for _, h := range s.preReq {
		t := s.timing.start()
		h.PreRequest(ctx, state, req, result)
		s.timing.done(PointPreRequest, h, t)
	}
}

// ResponseHeaders runs the ResponseHeaders hooks.
func (s *Scheduler) ResponseHeaders(ctx context.Context, state *State, req *Request, resp *Response) {
	for _, h := range s.respHdr {
		t := s.timing.start()
		h.ResponseHeaders(ctx, state, req, resp)
		s.timing.done(PointResponseHeaders, h, t)
	}
}

// ResponseChunk runs the ResponseChunk hooks.
func (s *Scheduler) ResponseChunk(ctx context.Context, state *State, req *Request, resp *Response, chunk []byte) {
	for _, h := range s.respChunk {
		t := s.timing.start()
		h.ResponseChunk(ctx, state, req, resp, chunk)
		s.timing.done(PointResponseChunk, h, t)
	}
}

// ResponseComplete runs the ResponseComplete hooks.
func (s *Scheduler) ResponseComplete(ctx context.Context, state *State, req *Request, resp *Response) {
	for _, h := range s.respDone {
		t := s.timing.start()
		h.ResponseComplete(ctx, state, req, resp)
		s.timing.done(PointResponseDone, h, t)
	}
}

// ReportResponse runs the ResponseReporter hooks; their time counts as
// ResponseComplete's, the extension point upstream reports them under.
func (s *Scheduler) ReportResponse(ctx context.Context, state *State, req *Request, resp *Response) {
	for _, h := range s.reporters {
		t := s.timing.start()
		h.ReportResponse(ctx, state, req, resp)
		s.timing.done(PointResponseDone, h, t)
	}
}

// WantsReports reports whether any plugin reports on finished responses,
// so the server finishes the usage before the last answer only then.
func (s *Scheduler) WantsReports() bool { return len(s.reporters) > 0 }

// Batchers returns the producers that place requests arriving together
// jointly, for simulations that deliver such requests at once.
func (s *Scheduler) Batchers() []Batcher {
	var out []Batcher
	for _, p := range s.producers {
		if b, ok := p.(Batcher); ok {
			out = append(out, b)
		}
	}
	return out
}

// WantsResponseChunks reports whether any plugin reads response chunks, so
// the server can skip the hook dispatch on the hot path when none does.
func (s *Scheduler) WantsResponseChunks() bool { return len(s.respChunk) > 0 }
