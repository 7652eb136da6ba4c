package flowcontrol

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/openepp/openepp/pkg/scheduler"
)

// The built-in flow-control policies, named as upstream names them.
const (
	GlobalStrictType     = "global-strict-fairness-policy"
	RoundRobinType       = "round-robin-fairness-policy"
	FCFSType             = "fcfs-ordering-policy"
	EDFType              = "edf-ordering-policy"
	SLODeadlineType      = "slo-deadline-ordering-policy"
	StaticUsageLimitType = "static-usage-limit-policy"
)

// The policies a Band without its own uses.
var (
	defaultOrdering scheduler.OrderingPolicy = NewFCFS(FCFSType)
	defaultFairness scheduler.FairnessPolicy = NewGlobalStrict(GlobalStrictType)
)

var (
	_ scheduler.FairnessPolicy   = (*GlobalStrict)(nil)
	_ scheduler.FairnessPolicy   = (*RoundRobin)(nil)
	_ scheduler.OrderingPolicy   = (*FCFS)(nil)
	_ scheduler.OrderingPolicy   = (*EDF)(nil)
	_ scheduler.OrderingPolicy   = (*SLODeadline)(nil)
	_ scheduler.UsageLimitPolicy = (*StaticUsageLimit)(nil)
)

func typed(typ, name string) scheduler.TypedName {
	if name == "" {
		name = typ
	}
	return scheduler.TypedName{Type: typ, Name: name}
}

// noParams decodes raw strictly into an empty struct, so that any
// parameter given to a policy that takes none is reported.
func noParams(raw json.RawMessage) error {
	var none struct{}
	return scheduler.DecodeParams(raw, &none)
}

// GlobalStrict is the default fairness policy: the band dispatches the
// request its ordering policy ranks first across all flows, so the band
// behaves as one queue. No parameters.
type GlobalStrict struct{ name scheduler.TypedName }

// NewGlobalStrict returns the policy named name.
func NewGlobalStrict(name string) *GlobalStrict {
	return &GlobalStrict{name: typed(GlobalStrictType, name)}
}

// TypedName implements scheduler.Plugin.
func (g *GlobalStrict) TypedName() scheduler.TypedName { return g.name }

// NewChooser implements scheduler.FairnessPolicy; the chooser has no state.
func (g *GlobalStrict) NewChooser() scheduler.FlowChooser { return globalStrictChooser{} }

type globalStrictChooser struct{}

// Choose returns the head that order ranks first (the earliest one on ties).
func (globalStrictChooser) Choose(heads []*scheduler.QueuedRequest, order scheduler.OrderingPolicy) int {
	best := 0
	for i := 1; i < len(heads); i++ {
		if order.Less(heads[i], heads[best]) {
			best = i
		}
	}
	return best
}

// GlobalStrictFactory builds a GlobalStrict from config.
func GlobalStrictFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	if err := noParams(raw); err != nil {
		return nil, err
	}
	return NewGlobalStrict(name), nil
}

// GlobalStrictRegistration describes the plugin type for the registry.
func GlobalStrictRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type: GlobalStrictType, Factory: GlobalStrictFactory,
		Summary: "Fairness (default): dispatches the band's request that its ordering policy ranks first across all flows, as if the band were one queue.",
	}
}

// RoundRobin is a fairness policy that takes turns among the band's flows
// with waiting requests: the flow served least recently goes next, and the
// flow just served goes to the back. Flows that stay busy are therefore
// served in a fixed rotation, one request each. No parameters.
//
// A flow the chooser has not seen joins at the back of the rotation, behind
// every flow it knows, so a stream of new flow IDs cannot starve a busy
// flow (as it could if newcomers were served before the turn wrapped). The
// chooser remembers flows that stop waiting for a while, so a flow that
// empties and refills between turns keeps its place; it forgets them once
// it remembers more than twice as many flows as are waiting (plus a
// margin), so many short-lived flow IDs do not grow it without bound.
type RoundRobin struct{ name scheduler.TypedName }

// NewRoundRobin returns the policy named name.
func NewRoundRobin(name string) *RoundRobin {
	return &RoundRobin{name: typed(RoundRobinType, name)}
}

// TypedName implements scheduler.Plugin.
func (r *RoundRobin) TypedName() scheduler.TypedName { return r.name }

// NewChooser implements scheduler.FairnessPolicy.
func (r *RoundRobin) NewChooser() scheduler.FlowChooser {
	return &roundRobinChooser{seen: map[string]rrFlow{}}
}

// roundRobinMargin is how many flows beyond twice the waiting ones the
// chooser may remember before it forgets the absent ones.
const roundRobinMargin = 64

type roundRobinChooser struct {
	// seen gives each remembered flow its place in the rotation: the
	// smallest ticket goes next. Tickets are handed out from next.
	seen map[string]rrFlow
	next uint64
	// round numbers Choose calls, to tell which remembered flows were
	// present in the latest one.
	round uint64
}

type rrFlow struct{ ticket, round uint64 }

// Choose returns the head with the smallest ticket and gives its flow a new
// one, sending it to the back.
func (c *roundRobinChooser) Choose(heads []*scheduler.QueuedRequest, _ scheduler.OrderingPolicy) int {
	if len(heads) == 0 {
		return 0
	}
	c.round++
	best := 0
	var bestTicket uint64
	for i, h := range heads {
		f, ok := c.seen[h.FlowID]
		if !ok {
			c.next++
			f.ticket = c.next
		}
		f.round = c.round
		c.seen[h.FlowID] = f
		if i == 0 || f.ticket < bestTicket {
			best, bestTicket = i, f.ticket
		}
	}
	c.next++
	c.seen[heads[best].FlowID] = rrFlow{ticket: c.next, round: c.round}
	if len(c.seen) > 2*len(heads)+roundRobinMargin {
		for id, f := range c.seen {
			if f.round != c.round {
				delete(c.seen, id)
			}
		}
	}
	return best
}

// RoundRobinFactory builds a RoundRobin from config.
func RoundRobinFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	if err := noParams(raw); err != nil {
		return nil, err
	}
	return NewRoundRobin(name), nil
}

// RoundRobinRegistration describes the plugin type for the registry.
func RoundRobinRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type: RoundRobinType, Factory: RoundRobinFactory,
		Summary: "Fairness: takes turns among the band's flows with waiting requests, one request each; the flow served least recently goes next, new flows join at the back.",
	}
}

// fcfsLess orders by Enqueued, then Seq.
func fcfsLess(a, b *scheduler.QueuedRequest) bool {
	if c := a.Enqueued.Compare(b.Enqueued); c != 0 {
		return c < 0
	}
	return a.Seq < b.Seq
}

// deadlineLess orders by the deadlines da and db, earliest first, zero
// (none) after every real one; ties are FCFS.
func deadlineLess(da, db time.Time, a, b *scheduler.QueuedRequest) bool {
	switch {
	case da.IsZero() && db.IsZero():
	case da.IsZero():
		return false
	case db.IsZero():
		return true
	default:
		if c := da.Compare(db); c != 0 {
			return c < 0
		}
	}
	return fcfsLess(a, b)
}

// FCFS is the default ordering policy: first come, first served, by
// Enqueued then Seq. No parameters.
type FCFS struct{ name scheduler.TypedName }

// NewFCFS returns the policy named name.
func NewFCFS(name string) *FCFS { return &FCFS{name: typed(FCFSType, name)} }

// TypedName implements scheduler.Plugin.
func (f *FCFS) TypedName() scheduler.TypedName { return f.name }

// Less implements scheduler.OrderingPolicy.
func (f *FCFS) Less(a, b *scheduler.QueuedRequest) bool { return fcfsLess(a, b) }

// FCFSFactory builds an FCFS from config.
func FCFSFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	if err := noParams(raw); err != nil {
		return nil, err
	}
	return NewFCFS(name), nil
}

// FCFSRegistration describes the plugin type for the registry.
func FCFSRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type: FCFSType, Factory: FCFSFactory,
		Summary: "Ordering (default): first come, first served within a flow.",
	}
}

// EDF orders a flow's requests earliest Deadline first (the TTL or client
// deadline, whichever is sooner); requests without a deadline go after all
// that have one; ties are FCFS. No parameters.
type EDF struct{ name scheduler.TypedName }

// NewEDF returns the policy named name.
func NewEDF(name string) *EDF { return &EDF{name: typed(EDFType, name)} }

// TypedName implements scheduler.Plugin.
func (e *EDF) TypedName() scheduler.TypedName { return e.name }

// Less implements scheduler.OrderingPolicy.
func (e *EDF) Less(a, b *scheduler.QueuedRequest) bool {
	return deadlineLess(a.Deadline, b.Deadline, a, b)
}

// EDFFactory builds an EDF from config.
func EDFFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	if err := noParams(raw); err != nil {
		return nil, err
	}
	return NewEDF(name), nil
}

// EDFRegistration describes the plugin type for the registry.
func EDFRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type: EDFType, Factory: EDFFactory,
		Summary: "Ordering: earliest deadline (TTL or client deadline) first; requests without one last; ties first come, first served.",
	}
}

// SLODeadline orders a flow's requests by earliest SLODeadline (arrival
// plus the TTFT objective); requests without one go last; ties are FCFS.
// No parameters.
type SLODeadline struct{ name scheduler.TypedName }

// NewSLODeadline returns the policy named name.
func NewSLODeadline(name string) *SLODeadline {
	return &SLODeadline{name: typed(SLODeadlineType, name)}
}

// TypedName implements scheduler.Plugin.
func (s *SLODeadline) TypedName() scheduler.TypedName { return s.name }

// Less implements scheduler.OrderingPolicy.
func (s *SLODeadline) Less(a, b *scheduler.QueuedRequest) bool {
	return deadlineLess(a.SLODeadline, b.SLODeadline, a, b)
}

// SLODeadlineFactory builds an SLODeadline from config.
func SLODeadlineFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	if err := noParams(raw); err != nil {
		return nil, err
	}
	return NewSLODeadline(name), nil
}

// SLODeadlineRegistration describes the plugin type for the registry.
func SLODeadlineRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type: SLODeadlineType, Factory: SLODeadlineFactory,
		Summary: "Ordering: earliest TTFT-objective deadline first; requests without an objective last; ties first come, first served.",
	}
}

// StaticUsageLimitParams configures StaticUsageLimit.
type StaticUsageLimitParams struct {
	Threshold float64 `json:"threshold" doc:"saturation below which every band may dispatch; > 0 (values above 1 let requests go to a saturated pool)" default:"1.0"`
	// PriorityThresholds is an OpenEPP extension: upstream's policy has one
	// threshold for every band.
	PriorityThresholds map[string]float64 `json:"priorityThresholds" doc:"OpenEPP extension: thresholds by priority; an entry applies to its priority and every lower one down to the next entry, priorities above every entry use threshold (e.g. {\"-1\": 0.8} holds all sheddable traffic at 80 % so higher priorities find room)" default:"{}"`
}

// DefaultStaticUsageLimitParams returns the upstream default.
func DefaultStaticUsageLimitParams() StaticUsageLimitParams {
	return StaticUsageLimitParams{Threshold: 1}
}

func (p *StaticUsageLimitParams) validate() error {
	var errs []error
	if !validThreshold(p.Threshold) {
		errs = append(errs, fmt.Errorf("threshold: must be a finite number > 0, got %v", p.Threshold))
	}
	for _, k := range slices.Sorted(maps.Keys(p.PriorityThresholds)) {
		if _, err := strconv.Atoi(k); err != nil {
			errs = append(errs, fmt.Errorf("priorityThresholds: key %q is not an integer priority", k))
		}
		if v := p.PriorityThresholds[k]; !validThreshold(v) {
			errs = append(errs, fmt.Errorf("priorityThresholds[%s]: must be a finite number > 0, got %v", k, v))
		}
	}
	return errors.Join(errs...)
}

func validThreshold(v float64) bool { return v > 0 && !math.IsInf(v, 1) }

// StaticUsageLimit is the default usage-limit policy: every priority may
// dispatch while saturation < threshold (parameter threshold, default 1.0),
// except those priorityThresholds covers: an entry applies to its priority
// and every lower one down to the next entry. A lower threshold
// for low priorities keeps room for higher ones: flow control orders only
// the EPP's queue, so without it a request of high priority released into
// a pool full of low-priority work still waits for a slot on its server.
type StaticUsageLimit struct {
	name      scheduler.TypedName
	threshold float64
	// steps are priorityThresholds by ascending priority.
	steps []priorityStep
}

type priorityStep struct {
	priority  int
	threshold float64
}

// NewStaticUsageLimit validates p and returns the policy named name.
func NewStaticUsageLimit(name string, p StaticUsageLimitParams) (*StaticUsageLimit, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	s := &StaticUsageLimit{name: typed(StaticUsageLimitType, name), threshold: p.Threshold}
	for k, v := range p.PriorityThresholds {
		prio, _ := strconv.Atoi(k) // validated
		s.steps = append(s.steps, priorityStep{prio, v})
	}
	slices.SortFunc(s.steps, func(a, b priorityStep) int { return a.priority - b.priority })
	return s, nil
}

// TypedName implements scheduler.Plugin.
func (s *StaticUsageLimit) TypedName() scheduler.TypedName { return s.name }

// Ceiling implements scheduler.UsageLimitPolicy: the threshold of the
// lowest entry at or above priority, or the common one.
func (s *StaticUsageLimit) Ceiling(priority int) float64 {
	for _, st := range s.steps {
		if st.priority >= priority {
			return st.threshold
		}
	}
	return s.threshold
}

// StaticUsageLimitFactory builds a StaticUsageLimit from config.
func StaticUsageLimitFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	p := DefaultStaticUsageLimitParams()
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	s, err := NewStaticUsageLimit(name, p)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// StaticUsageLimitRegistration describes the plugin type for the registry.
func StaticUsageLimitRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type: StaticUsageLimitType, Factory: StaticUsageLimitFactory, Params: StaticUsageLimitParams{},
		Summary: "Usage limit (default): every priority band may dispatch while the pool's saturation is below threshold (default 1.0), " +
			"or below its own entry in priorityThresholds.",
	}
}
