package disagg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// HandlerType is the type name of Handler.
const HandlerType = "disagg-profile-handler"

// The request headers the decode server's sidecar reads.
const (
	// PrefillerHeader names the one endpoint (ip:port) that runs the prefill.
	PrefillerHeader = "x-prefiller-host-port"
	// EncodersHeader lists the endpoints (ip:port,ip:port) that run the
	// multimodal encoders.
	EncodersHeader = "x-encoder-hosts-ports"
)

// Stage orders.
const (
	// DecodeFirst picks the decode endpoint first, so deciders can weigh
	// what it already caches.
	DecodeFirst = "decode-first"
	// PrefillFirst runs the prefill profile first, for every request, then
	// decode (which may then favour endpoints near the prefill pick).
	PrefillFirst = "prefill-first"
)

// The stages and the default names of their profiles.
const (
	StageDecode  = "decode"
	StagePrefill = "prefill"
	StageEncode  = "encode"
)

// HandlerParams configures Handler in llm-d's shape.
type HandlerParams struct {
	StageOrder string        `json:"stageOrder" doc:"decode-first (decode picks, then the deciders choose the other stages) or prefill-first (prefill for every request, then decode)" default:"decode-first"`
	Profiles   StageProfiles `json:"profiles" doc:"the profile each stage runs; a stage whose profile is not configured never runs" default:"{\"decode\":\"decode\",\"prefill\":\"prefill\",\"encode\":\"encode\"}"`
	// MaxPrefillQueue makes disaggregation load-aware: a decider's "yes" is
	// no help when the prefill servers are backed up, since the request then
	// waits there longer than its local prefill would take.
	MaxPrefillQueue int `json:"maxPrefillQueue" doc:"OpenEPP: prefill on the decode endpoint instead when the picked prefill endpoint reports more waiting requests than the decode endpoint plus this; 0 = off (llm-d)" default:"0"`
	// CountRunningPrefills: with chunked prefill a prefill server runs its
	// prompts side by side, so its waiting queue stays short while each
	// prompt slows the others; its running requests are prefills too. While
	// the decode endpoint has requests waiting it is the bottleneck and
	// prefill goes remote as without this.
	CountRunningPrefills bool         `json:"countRunningPrefills" doc:"OpenEPP: with maxPrefillQueue, count the prefill endpoint's running requests as its load too, while the decode endpoint has none waiting; pays with few prefill servers (see docs/deploy.md)" default:"false"`
	Deciders             StageDecider `json:"deciders" doc:"instance names of the deciders (Decider plugins) gating prefill and encode; without one (OpenEPP), prefill runs for every request and encode for multimodal ones, when their profiles exist" default:"{}"`
}

// StageProfiles names the profile of each stage.
type StageProfiles struct {
	Decode  string `json:"decode"`
	Prefill string `json:"prefill"`
	Encode  string `json:"encode"`
}

// StageDecider names the decider of each optional stage.
type StageDecider struct {
	Prefill string `json:"prefill"`
	Encode  string `json:"encode"`
}

// Handler is the disagg-profile-handler (see the package doc). It is also a
// PreRequest hook: it writes the stage headers. Before the second stage
// runs it records the first stage's pick as scheduler.PeerEndpoint (the
// decode pick for prefill and encode, the prefill pick for decode when
// prefill runs first), which topology-affinity plugins stay close to.
type Handler struct {
	name     scheduler.TypedName
	params   HandlerParams
	explicit []string       // profiles named in the config: they must exist
	prefill  Decider        // nil: runs whenever its profile exists
	encode   Decider        // defaults to the multimodal decider
	legacy   *legacyDecider // pd-profile-handler's built-in prefill decider
	metrics  *decisionMetrics
	log      logr.Logger
}

var (
	_ scheduler.ProfileHandler = (*Handler)(nil)
	_ scheduler.PreRequest     = (*Handler)(nil)
	_ scheduler.ProfileUser    = (*Handler)(nil)
	_ scheduler.Resolver       = (*Handler)(nil)
)

// plan is one request's decisions, made once and read by the later calls.
type plan struct {
	decided        bool
	prefill        bool
	encode         bool
	prefillStarted bool
}

var planKey = scheduler.NewKey[*plan]("disagg-plan")

// NewHandler validates p and returns a handler; deciders are looked up by
// Resolve. h may be nil (no metrics, no logging).
func NewHandler(name string, p HandlerParams, h *scheduler.Handle) (*Handler, error) {
	var explicit []string
	for _, s := range []struct {
		stage string
		name  *string
	}{{StageDecode, &p.Profiles.Decode}, {StagePrefill, &p.Profiles.Prefill}, {StageEncode, &p.Profiles.Encode}} {
		if *s.name == "" {
			*s.name = s.stage
			if s.stage != StageDecode {
				continue // an optional stage with no profile of its name is off
			}
		}
		explicit = append(explicit, *s.name)
	}
	if p.MaxPrefillQueue < 0 {
		return nil, fmt.Errorf("maxPrefillQueue: %d must be >= 0", p.MaxPrefillQueue)
	}
	if p.CountRunningPrefills && p.MaxPrefillQueue == 0 {
		return nil, errors.New("countRunningPrefills: needs maxPrefillQueue > 0, whose comparison it changes")
	}
	switch p.StageOrder {
	case "":
		p.StageOrder = DecodeFirst
	case DecodeFirst, PrefillFirst:
	default:
		return nil, fmt.Errorf("stageOrder: %q is neither %q nor %q", p.StageOrder, DecodeFirst, PrefillFirst)
	}
	if p.Profiles.Prefill == p.Profiles.Decode || p.Profiles.Encode == p.Profiles.Decode || p.Profiles.Encode == p.Profiles.Prefill {
		return nil, fmt.Errorf("profiles: each stage needs its own profile, got decode %q, prefill %q, encode %q",
			p.Profiles.Decode, p.Profiles.Prefill, p.Profiles.Encode)
	}
	out := &Handler{name: scheduler.TypedName{Type: HandlerType, Name: name}, params: p, explicit: explicit, log: logr.Discard(),
		encode: &Always{name: scheduler.TypedName{Type: MultimodalDeciderType}, multimodal: true}}
	if h != nil {
		out.log = h.Log
		m, err := registerDecisionMetrics(h.Registerer, out.name)
		if err != nil {
			return nil, err
		}
		out.metrics = m
	}
	return out, nil
}

// HandlerFactory builds a Handler from config.
func HandlerFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	var p HandlerParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	return NewHandler(name, p, h)
}

// HandlerRegistration describes the plugin type for the registry.
func HandlerRegistration() scheduler.Registration {
	return scheduler.Registration{Type: HandlerType, Factory: HandlerFactory, Params: HandlerParams{},
		Summary: "Disaggregated serving: decode picks the destination; deciders add prefill and encode endpoints, named in x-prefiller-host-port and x-encoder-hosts-ports."}
}

// TypedName implements scheduler.Plugin.
func (d *Handler) TypedName() scheduler.TypedName { return d.name }

// RequiredProfiles implements scheduler.ProfileUser: decode, and any
// profile the config names explicitly.
func (d *Handler) RequiredProfiles() []string { return d.explicit }

// Resolve implements scheduler.Resolver: find the deciders.
func (d *Handler) Resolve(h *scheduler.Handle) error {
	if d.legacy != nil {
		d.prefill = d.legacy
		return d.legacy.resolve(h)
	}
	var err error
	if d.prefill, err = lookupDecider(h, "deciders.prefill", d.params.Deciders.Prefill); err != nil {
		return err
	}
	if d.params.Deciders.Encode != "" {
		if d.encode, err = lookupDecider(h, "deciders.encode", d.params.Deciders.Encode); err != nil {
			return err
		}
	}
	if d.params.StageOrder == PrefillFirst && d.prefill != nil {
		h.Log.Info("warning: deciders.prefill is not consulted with stageOrder prefill-first (prefill runs for every request)",
			"plugin", d.name.String())
	}
	return nil
}

func lookupDecider(h *scheduler.Handle, field, name string) (Decider, error) {
	if name == "" {
		return nil, nil
	}
	p, ok := h.Plugin(name)
	if !ok {
		return nil, fmt.Errorf("%s: no plugin named %q in the config", field, name)
	}
	dec, ok := p.(Decider)
	if !ok {
		return nil, fmt.Errorf("%s: plugin %q (type %q) is not a disaggregation decider", field, name, p.TypedName().Type)
	}
	return dec, nil
}

// Pick implements scheduler.ProfileHandler.
func (d *Handler) Pick(ctx context.Context, state *scheduler.State, req *scheduler.Request, profiles map[string]*scheduler.Profile, results map[string]*scheduler.ProfileResult) []*scheduler.Profile {
	pl, ok := planKey.Get(state)
	if !ok {
		pl = &plan{}
		planKey.Set(state, pl)
	}
	decodeName := d.params.Profiles.Decode
	if d.params.StageOrder == PrefillFirst {
		if !pl.prefillStarted {
			pl.prefillStarted = true
			pl.encode = d.decide(ctx, state, req, d.encode, profiles[d.params.Profiles.Encode], nil)
			pl.prefill = profiles[d.params.Profiles.Prefill] != nil
			if next := d.stages(pl, profiles); len(next) > 0 {
				return next
			}
		}
		if _, done := results[decodeName]; !done {
			if pf := results[d.params.Profiles.Prefill]; pf != nil && len(pf.Targets) > 0 {
				scheduler.PeerEndpoint.Set(state, pf.Targets[0])
			}
			return []*scheduler.Profile{profiles[decodeName]}
		}
		return nil
	}
	decode, done := results[decodeName]
	if !done {
		return []*scheduler.Profile{profiles[decodeName]}
	}
	if decode == nil || len(decode.Targets) == 0 || pl.decided {
		return nil
	}
	pl.decided = true
	target := decode.Targets[0]
	scheduler.PeerEndpoint.Set(state, target)
	pl.encode = d.decide(ctx, state, req, d.encode, profiles[d.params.Profiles.Encode], target)
	pl.prefill = d.decide(ctx, state, req, d.prefill, profiles[d.params.Profiles.Prefill], target)
	return d.stages(pl, profiles)
}

// decide asks dec whether a stage with profile p runs; no profile, never.
func (d *Handler) decide(ctx context.Context, state *scheduler.State, req *scheduler.Request, dec Decider, p *scheduler.Profile, decode *endpoint.Endpoint) bool {
	if p == nil {
		return false
	}
	return dec == nil || dec.Disaggregate(ctx, state, req, decode)
}

// stages lists the optional profiles the plan runs, encode first.
func (d *Handler) stages(pl *plan, profiles map[string]*scheduler.Profile) []*scheduler.Profile {
	var next []*scheduler.Profile
	if pl.encode {
		next = append(next, profiles[d.params.Profiles.Encode])
	}
	if pl.prefill {
		next = append(next, profiles[d.params.Profiles.Prefill])
	}
	return next
}

// ProcessResults implements scheduler.ProfileHandler: decode is primary; a
// planned stage whose profile failed is dropped (decode-only for it) and
// counted.
func (d *Handler) ProcessResults(_ context.Context, state *scheduler.State, req *scheduler.Request, results map[string]*scheduler.ProfileResult) (*scheduler.Result, error) {
	decodeName := d.params.Profiles.Decode
	decode := results[decodeName]
	if decode == nil {
		return nil, fmt.Errorf("decode profile %q failed: %w", decodeName, scheduler.ErrNoCandidates)
	}
	profiles := make(map[string]*scheduler.ProfileResult, len(results))
	for name, r := range results {
		if r != nil && len(r.Targets) > 0 {
			profiles[name] = r
		}
	}
	pl, _ := planKey.Get(state)
	if pl == nil {
		pl = &plan{}
	}
	encode := d.kept(req, profiles, StageEncode, d.params.Profiles.Encode, pl.encode)
	prefill := d.kept(req, profiles, StagePrefill, d.params.Profiles.Prefill, pl.prefill)
	if prefill {
		p := profiles[d.params.Profiles.Prefill].Targets[0]
		busy := d.params.MaxPrefillQueue > 0 && d.prefillLoad(p, decode.Targets[0]) > decode.Targets[0].Metrics().WaitingQueueSize+d.params.MaxPrefillQueue
		if busy {
			d.metrics.skipped(StagePrefill, reasonBusy)
		}
		if busy || p.HostPort == decode.Targets[0].HostPort { // prefilling on itself is decode-only
			delete(profiles, d.params.Profiles.Prefill)
			prefill = false
		}
	}
	d.metrics.decided(req.IncomingModel, decisionType(encode, prefill))
	return &scheduler.Result{Profiles: profiles, Primary: decodeName, PrefillProfile: d.params.Profiles.Prefill}, nil
}

// prefillLoad is what maxPrefillQueue compares for the prefill pick p
// against decode endpoint dec: p's waiting requests, plus its running ones
// with countRunningPrefills while dec has none waiting.
func (d *Handler) prefillLoad(p, dec *endpoint.Endpoint) int {
	load := p.Metrics().WaitingQueueSize
	if d.params.CountRunningPrefills && dec.Metrics().WaitingQueueSize == 0 {
		load += p.Metrics().RunningRequestsSize
	}
	return load
}

// kept reports whether a planned stage has a pick, counting and logging a
// planned stage that found no endpoint.
func (d *Handler) kept(req *scheduler.Request, profiles map[string]*scheduler.ProfileResult, stage, profile string, planned bool) bool {
	if !planned {
		delete(profiles, profile)
		return false
	}
	if _, ok := profiles[profile]; ok {
		return true
	}
	d.metrics.skipped(stage, reasonNoEndpoint)
	d.log.V(1).Info("disaggregated stage found no endpoint; serving it on the decode endpoint",
		"stage", stage, "profile", profile, "requestID", req.ID)
	return false
}

func decisionType(encode, prefill bool) string {
	switch {
	case encode && prefill:
		return "encode-prefill-decode"
	case encode:
		return "encode-decode"
	case prefill:
		return "prefill-decode"
	}
	return "decode-only"
}

// PreRequest implements scheduler.PreRequest: name the stage endpoints for
// the sidecar, and strip the headers of stages that do not run.
func (d *Handler) PreRequest(_ context.Context, _ *scheduler.State, _ *scheduler.Request, result *scheduler.Result) {
	if p := result.Profiles[d.params.Profiles.Prefill]; p != nil && len(p.Targets) > 0 {
		result.SetHeader(PrefillerHeader, p.Targets[0].HostPort)
	} else {
		result.RemoveHeader(PrefillerHeader)
	}
	if e := result.Profiles[d.params.Profiles.Encode]; e != nil && len(e.Targets) > 0 {
		addrs := make([]string, len(e.Targets))
		for i, t := range e.Targets {
			addrs[i] = t.HostPort
		}
		result.SetHeader(EncodersHeader, strings.Join(addrs, ","))
	} else {
		result.RemoveHeader(EncodersHeader)
	}
}
