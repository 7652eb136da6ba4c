package eviction

import (
	"encoding/json"
	"fmt"

	"github.com/openepp/openepp/pkg/scheduler"
)

// Plugin types, as llm-d registers them.
const (
	SheddableFilterType  = "sheddable-eviction-filter"
	PriorityThenTimeType = "priority-then-time-eviction-order-policy"
)

// Filter decides which leases may be revoked. It is asked once, when the
// lease is tracked, so it may read only what does not change.
type Filter interface {
	Evictable(l *Lease) bool
}

// Ordering orders revocable leases: Before(a, b) means a goes first.
type Ordering interface {
	Before(a, b *Lease) bool
}

// Sheddable lets only sheddable requests (priority < 0) be revoked: a
// negative priority is the contract that a request may be ended mid-stream
// for higher-priority demand.
type Sheddable struct{ name scheduler.TypedName }

// TypedName implements scheduler.Plugin.
func (s *Sheddable) TypedName() scheduler.TypedName { return s.name }

// Evictable implements Filter.
func (s *Sheddable) Evictable(l *Lease) bool { return l.Priority < 0 }

// PriorityThenTime revokes the lowest priority first and, within a
// priority, the most recently dispatched first: it has the least invested
// work and the fewest generated tokens to throw away.
type PriorityThenTime struct{ name scheduler.TypedName }

// TypedName implements scheduler.Plugin.
func (p *PriorityThenTime) TypedName() scheduler.TypedName { return p.name }

// Before implements Ordering.
func (p *PriorityThenTime) Before(a, b *Lease) bool {
	if a.Priority != b.Priority {
		return a.Priority < b.Priority
	}
	if !a.Dispatched.Equal(b.Dispatched) {
		return a.Dispatched.After(b.Dispatched)
	}
	return a.seq > b.seq
}

// NewSheddable and NewPriorityThenTime return the default policies.
func NewSheddable() *Sheddable { return &Sheddable{name: named(SheddableFilterType, "")} }

// NewPriorityThenTime returns the default ordering.
func NewPriorityThenTime() *PriorityThenTime {
	return &PriorityThenTime{name: named(PriorityThenTimeType, "")}
}

func named(typ, name string) scheduler.TypedName {
	if name == "" {
		name = typ
	}
	return scheduler.TypedName{Type: typ, Name: name}
}

// noParams decodes raw strictly into an empty struct: both policies take
// no parameters, and any given is reported.
func noParams(typ string, raw json.RawMessage) error {
	var none struct{}
	if err := scheduler.DecodeParams(raw, &none); err != nil {
		return fmt.Errorf("%s: %w", typ, err)
	}
	return nil
}

// The EPP always revokes with these two policies (as llm-d wires them);
// declaring them in a config is accepted so that llm-d configs load.

// SheddableRegistration describes the filter type for the registry.
func SheddableRegistration() scheduler.Registration {
	return registration(SheddableFilterType, "Eviction filter (llm-d, alpha): only sheddable requests (priority < 0) "+
		"are evicted in flight. Always in use with flowControl.enableEviction.",
		func(n scheduler.TypedName) scheduler.Plugin { return &Sheddable{name: n} })
}

// PriorityThenTimeRegistration describes the ordering type for the registry.
func PriorityThenTimeRegistration() scheduler.Registration {
	return registration(PriorityThenTimeType, "Eviction order (llm-d, alpha): lowest priority first, then the most "+
		"recently dispatched. Always in use with flowControl.enableEviction.",
		func(n scheduler.TypedName) scheduler.Plugin { return &PriorityThenTime{name: n} })
}

// registration is a policy type without parameters.
func registration(typ, summary string, build func(scheduler.TypedName) scheduler.Plugin) scheduler.Registration {
	return scheduler.Registration{Type: typ, Summary: summary,
		Factory: func(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
			if err := noParams(typ, raw); err != nil {
				return nil, err
			}
			return build(named(typ, name)), nil
		}}
}
