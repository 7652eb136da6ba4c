package flowcontrol

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/openepp/openepp/pkg/promreg"
	"github.com/openepp/openepp/pkg/scheduler"
)

// ProgramAwareType is llm-d's fairness policy for agentic traffic, where a
// program (an agent session, a pipeline: one fairness ID) sends many
// requests and the flows should share the pool by what they consumed, not
// by turns.
const ProgramAwareType = "program-aware-fairness"

// Strategies of the program-aware policy.
const (
	StrategyLAS = "las"
	StrategyRR  = "rr"
)

// ProgramAwareParams are llm-d's parameters, with both the names of its code
// and those of its README.
type ProgramAwareParams struct {
	Strategy             string  `json:"strategy" doc:"las (least attained service: the flow that consumed least goes next) or rr (turns, as round-robin-fairness-policy); llm-d's drr is refused" default:"las"`
	EvictionTTLSeconds   float64 `json:"evictionTtlSeconds" doc:"forget a flow idle (nothing in flight) this long; 0 never" default:"3600"`
	EvictionSweepSeconds float64 `json:"evictionSweepSeconds" doc:"how often idle flows are looked for; > 0" default:"300"`
	LASWeightService     float64 `json:"lasWeightService" doc:"weight of the flow's attained service (less is better) in the las score; >= 0" default:"0.8"`
	LASWeightHeadWait    float64 `json:"lasWeightHeadWait" doc:"weight of how long the flow's next request has waited (longer is better); >= 0" default:"0.2"`
	LASDecayFactor       float64 `json:"lasDecayFactor" doc:"attained service is multiplied by this every second, so old consumption fades; in (0, 1]" default:"0.99997"`
	LASHalfLifeSeconds   float64 `json:"lasHalfLifeSeconds" doc:"when > 0, attained service halves every this many seconds instead of lasDecayFactor" default:"0"`
	// The README's names.
	WeightService          *float64 `json:"weightService,omitempty" doc:"README name of lasWeightService" default:""`
	WeightServiceHeadWait  *float64 `json:"weightServiceHeadWait,omitempty" doc:"README name of lasWeightHeadWait" default:""`
	ServiceHalfLifeSeconds *float64 `json:"serviceHalfLifeSeconds,omitempty" doc:"README name of lasHalfLifeSeconds" default:""`
}

// DefaultProgramAwareParams returns llm-d's defaults.
func DefaultProgramAwareParams() ProgramAwareParams {
	return ProgramAwareParams{Strategy: StrategyLAS, EvictionTTLSeconds: 3600, EvictionSweepSeconds: 300,
		LASWeightService: 0.8, LASWeightHeadWait: 0.2, LASDecayFactor: 0.99997}
}

func (p *ProgramAwareParams) validate() error {
	for _, alias := range [][2]*float64{{p.WeightService, &p.LASWeightService},
		{p.WeightServiceHeadWait, &p.LASWeightHeadWait}, {p.ServiceHalfLifeSeconds, &p.LASHalfLifeSeconds}} {
		if alias[0] != nil {
			*alias[1] = *alias[0]
		}
	}
	var errs []error
	switch p.Strategy {
	case StrategyLAS, StrategyRR:
	case "drr":
		errs = append(errs, errors.New("strategy: drr (deficit round robin) is not implemented; use las or rr"))
	default:
		errs = append(errs, fmt.Errorf("strategy: want las or rr, got %q", p.Strategy))
	}
	check := func(name string, ok bool, v float64, want string) {
		if !ok || math.IsNaN(v) || math.IsInf(v, 0) {
			errs = append(errs, fmt.Errorf("%s: must be %s, got %v", name, want, v))
		}
	}
	check("evictionTtlSeconds", p.EvictionTTLSeconds >= 0, p.EvictionTTLSeconds, ">= 0")
	check("evictionSweepSeconds", p.EvictionSweepSeconds > 0, p.EvictionSweepSeconds, "> 0")
	check("lasWeightService", p.LASWeightService >= 0, p.LASWeightService, ">= 0")
	check("lasWeightHeadWait", p.LASWeightHeadWait >= 0, p.LASWeightHeadWait, ">= 0")
	check("lasDecayFactor", p.LASDecayFactor > 0 && p.LASDecayFactor <= 1, p.LASDecayFactor, "in (0, 1]")
	check("lasHalfLifeSeconds", p.LASHalfLifeSeconds >= 0, p.LASHalfLifeSeconds, ">= 0")
	return errors.Join(errs...)
}

// ProgramAware is llm-d's program-aware-fairness. With strategy las each
// flow accumulates the service it attained: its requests' uncached prompt
// tokens plus their output tokens (the prompt estimate is charged at
// dispatch, so a burst of one flow's requests counts before any finishes,
// and corrected by the reported usage at the end), decaying with time. A
// band dispatches the flow with the best score
//
//	lasWeightService·(1 − service/max service) + lasWeightHeadWait·(head wait/max head wait)
//
// over its flows with waiting requests, so an agent session that consumed
// little goes ahead of one that consumed much, and a long wait still wins
// in the end. Service is shared by every band. With strategy rr it takes
// turns as round-robin-fairness-policy does.
type ProgramAware struct {
	name   scheduler.TypedName
	params ProgramAwareParams
	clock  scheduler.Clock
	*ledger
	// gauges serve the ledger (nil: not served); the instance joins them at
	// its first request, once a reload's Inherit has settled its ledger.
	gauges *ProgramGauges
	joined sync.Once
}

// ledger holds the flows' accounts; a reload that rebuilds the policy hands
// it on (Inherit), so the flows keep what they attained.
type ledger struct {
	mu        sync.Mutex
	programs  map[string]*program
	lastSweep time.Time
}

// program is one flow's account.
type program struct {
	service  float64   // attained service as of at
	at       time.Time // when service was last decayed
	inFlight int
	last     time.Time // last dispatch or completion
	// waitMs is the moving average of the flow's requests' waits in flow
	// control, in milliseconds; waits counts them.
	waitMs float64
	waits  int
}

// waitSmoothing is the weight of a request's wait in its flow's moving
// average (after the first, which sets it).
const waitSmoothing = 0.2

var (
	_ scheduler.FairnessPolicy   = (*ProgramAware)(nil)
	_ scheduler.PreRequest       = (*ProgramAware)(nil)
	_ scheduler.ResponseComplete = (*ProgramAware)(nil)
	_ scheduler.StateDumper      = (*ProgramAware)(nil)
	_ scheduler.Inheritor        = (*ProgramAware)(nil)
)

// charged is what PreRequest charged a request, for ResponseComplete to
// correct.
var charged = scheduler.NewKey[float64]("program-aware-charged")

// NewProgramAware validates p and returns the policy named name, timed by
// clock (nil: the wall clock).
func NewProgramAware(name string, p ProgramAwareParams, clock scheduler.Clock) (*ProgramAware, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	if clock == nil {
		clock = scheduler.RealClock{}
	}
	return &ProgramAware{name: typed(ProgramAwareType, name), params: p, clock: clock,
		ledger: &ledger{programs: map[string]*program{}}}, nil
}

// Inherit implements scheduler.Inheritor: a reload keeps the flows'
// accounts, so tuning the policy does not hand every flow a clean slate.
func (pa *ProgramAware) Inherit(prev scheduler.Plugin) {
	if old, ok := prev.(*ProgramAware); ok {
		pa.ledger = old.ledger
	}
}

// TypedName implements scheduler.Plugin.
func (pa *ProgramAware) TypedName() scheduler.TypedName { return pa.name }

// NewChooser implements scheduler.FairnessPolicy.
func (pa *ProgramAware) NewChooser() scheduler.FlowChooser {
	if pa.params.Strategy == StrategyRR {
		return NewRoundRobin("").NewChooser()
	}
	return lasChooser{pa}
}

// decayed returns p's service at now, moving its clock there.
func (pa *ProgramAware) decayed(p *program, now time.Time) float64 {
	if dt := now.Sub(p.at).Seconds(); dt > 0 && p.service > 0 {
		if h := pa.params.LASHalfLifeSeconds; h > 0 {
			p.service *= math.Exp2(-dt / h)
		} else {
			p.service *= math.Pow(pa.params.LASDecayFactor, dt)
		}
	}
	p.at = now
	return p.service
}

// account returns flow's account, creating it; call with mu held.
func (pa *ProgramAware) account(flow string, now time.Time) *program {
	p := pa.programs[flow]
	if p == nil {
		p = &program{at: now, last: now}
		pa.programs[flow] = p
	}
	return p
}

type lasChooser struct{ pa *ProgramAware }

// Choose implements scheduler.FlowChooser.
func (c lasChooser) Choose(heads []*scheduler.QueuedRequest, order scheduler.OrderingPolicy) int {
	pa := c.pa
	now := pa.clock.Now()
	service := make([]float64, len(heads))
	var maxService, maxWait float64
	pa.mu.Lock()
	for i, h := range heads {
		if p := pa.programs[h.FlowID]; p != nil {
			service[i] = pa.decayed(p, now)
		}
		maxService = max(maxService, service[i])
		maxWait = max(maxWait, now.Sub(h.Enqueued).Seconds())
	}
	pa.mu.Unlock()
	best, bestScore := 0, math.Inf(-1)
	for i, h := range heads {
		score := 0.0
		if maxService > 0 {
			score += pa.params.LASWeightService * (1 - service[i]/maxService)
		} else {
			score += pa.params.LASWeightService
		}
		if maxWait > 0 {
			score += pa.params.LASWeightHeadWait * now.Sub(h.Enqueued).Seconds() / maxWait
		}
		if score > bestScore || (score == bestScore && order.Less(h, heads[best])) {
			best, bestScore = i, score
		}
	}
	return best
}

// PreRequest implements scheduler.PreRequest: the request's flow is charged
// its prompt estimate now (every request, queued or not, is service).
func (pa *ProgramAware) PreRequest(_ context.Context, state *scheduler.State, req *scheduler.Request, _ *scheduler.Result) {
	if pa.gauges != nil {
		pa.joined.Do(func() { pa.gauges.Add(pa) })
	}
	cost := 0.0
	if req.Body != nil {
		cost = float64(req.Body.EstimatedPromptTokens())
	}
	charged.Set(state, cost)
	now := pa.clock.Now()
	pa.mu.Lock()
	defer pa.mu.Unlock()
	p := pa.account(flowOf(req), now)
	p.service = pa.decayed(p, now) + cost
	p.inFlight++
	p.last = now
	if ms := float64(req.QueueWait) / float64(time.Millisecond); p.waits == 0 {
		p.waitMs = ms
	} else {
		p.waitMs += waitSmoothing * (ms - p.waitMs)
	}
	p.waits++
	pa.sweep(now)
}

// ResponseComplete implements scheduler.ResponseComplete: the reported
// usage replaces the estimate (uncached prompt plus output tokens).
func (pa *ProgramAware) ResponseComplete(_ context.Context, state *scheduler.State, req *scheduler.Request, resp *scheduler.Response) {
	now := pa.clock.Now()
	cost, _ := charged.Get(state)
	pa.mu.Lock()
	defer pa.mu.Unlock()
	p := pa.programs[flowOf(req)]
	if p == nil { // forgotten meanwhile: nothing to correct
		return
	}
	p.inFlight = max(p.inFlight-1, 0)
	p.last = now
	if resp != nil && resp.UsageKnown {
		u := resp.Usage
		actual := float64(max(u.PromptTokens-u.CachedTokens, 0) + u.CompletionTokens)
		p.service = max(pa.decayed(p, now)+actual-cost, 0)
	}
}

func flowOf(req *scheduler.Request) string {
	if req.FairnessID == "" {
		return DefaultFlowID
	}
	return req.FairnessID
}

// sweep forgets idle flows once per evictionSweepSeconds; call with mu held.
func (pa *ProgramAware) sweep(now time.Time) {
	ttl := time.Duration(pa.params.EvictionTTLSeconds * float64(time.Second))
	if ttl <= 0 || now.Sub(pa.lastSweep) < time.Duration(pa.params.EvictionSweepSeconds*float64(time.Second)) {
		return
	}
	pa.lastSweep = now
	for id, p := range pa.programs {
		if p.inFlight == 0 && now.Sub(p.last) > ttl {
			delete(pa.programs, id)
		}
	}
}

// programDumpLimit bounds the flows DumpState lists.
const programDumpLimit = 20

// programRow is one flow's account as the state dump and the gauges show it.
type programRow struct {
	Flow     string  `json:"flow"`
	Service  float64 `json:"attainedServiceTokens"`
	InFlight int     `json:"inFlight"`
	WaitMs   float64 `json:"avgWaitMilliseconds"`
}

// accounts returns every flow's account, most served first, and Jain's
// fairness index over their attained service (1 with fewer than two).
func (pa *ProgramAware) accounts() ([]programRow, float64) {
	now := pa.clock.Now()
	pa.mu.Lock()
	rows := make([]programRow, 0, len(pa.programs))
	var sum, sumSq float64
	for id, p := range pa.programs {
		s := pa.decayed(p, now)
		sum, sumSq = sum+s, sumSq+s*s
		rows = append(rows, programRow{id, math.Round(s), p.inFlight, math.Round(p.waitMs*10) / 10})
	}
	pa.mu.Unlock()
	jain := 1.0
	if n := float64(len(rows)); n > 1 && sumSq > 0 {
		jain = sum * sum / (n * sumSq)
	}
	slices.SortFunc(rows, func(a, b programRow) int {
		return cmp.Or(cmp.Compare(b.Service, a.Service), cmp.Compare(a.Flow, b.Flow))
	})
	return rows, jain
}

// DumpState implements scheduler.StateDumper: the flow count, Jain's
// fairness index over attained service, and the most served flows.
func (pa *ProgramAware) DumpState() any {
	rows, jain := pa.accounts()
	more := max(len(rows)-programDumpLimit, 0)
	return map[string]any{"strategy": pa.params.Strategy, "flows": len(rows), "jainsFairnessIndex": jain,
		"mostServed": rows[:len(rows)-more], "moreFlows": more}
}

// ProgramAwareFactory builds a ProgramAware from config.
func ProgramAwareFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	p := DefaultProgramAwareParams()
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	var clock scheduler.Clock
	if h != nil {
		clock = h.Clock
	}
	pa, err := NewProgramAware(name, p, clock)
	if err != nil {
		return nil, err
	}
	if reg := h.MetricsRegisterer(); reg != nil {
		if pa.gauges, err = promreg.Shared(reg, NewProgramGauges()); err != nil {
			return nil, err
		}
	}
	return pa, nil
}

// ProgramAwareRegistration describes the plugin type for the registry.
func ProgramAwareRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type: ProgramAwareType, Factory: ProgramAwareFactory, Params: ProgramAwareParams{},
		Summary: "Fairness (llm-d): least attained service across flows (agent sessions, programs): the flow whose requests " +
			"consumed the fewest tokens lately dispatches next, a long head wait weighing too.",
	}
}
