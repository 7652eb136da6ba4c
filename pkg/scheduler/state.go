package scheduler

import (
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
)

// State is the per-request scratch space plugins share, from Produce through
// ResponseComplete. One request's hooks run sequentially, so State needs no
// locking; it must not be retained after ResponseComplete.
type State struct {
	// Rand is the request's random source, seeded by the scheduler so that a
	// run is reproducible for a seed. Plugins must not use a global source.
	Rand *rand.Rand
	// Now is when scheduling started; plugins use it instead of the clock.
	Now time.Time
	// OnWait, when set, is called by a plugin about to wait for other
	// requests (a batching window): admission then releases the next
	// queued request instead of waiting for this one to be scheduled.
	OnWait func()

	values []any
	// The random source and the first values live in the State, so a new
	// request's state is one allocation.
	pcg    rand.PCG
	rng    rand.Rand
	inline [inlineValues]any
}

// inlineValues is how many keys (the first declared) a State holds itself,
// room for the five built-in ones and a few more; setting a later key
// allocates the full slice once per request.
const inlineValues = 8

// NewState returns a state seeded with seed and stamped with now.
func NewState(seed uint64, now time.Time) *State {
	s := &State{Now: now, pcg: *rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)}
	s.rng = *rand.New(&s.pcg)
	s.Rand = &s.rng
	s.values = s.inline[:]
	return s
}

var keyCount atomic.Int32

// Key is a typed slot in State. Declare keys as package variables next to the
// plugin that produces the value:
//
//	var matchKey = scheduler.NewKey[*Match]("prefix-match")
type Key[T any] struct {
	id   int
	name string
}

// NewKey allocates a new slot; call it once per key, at package init.
func NewKey[T any](name string) Key[T] {
	return Key[T]{id: int(keyCount.Add(1)) - 1, name: name}
}

// Name is the key's diagnostic name.
func (k Key[T]) Name() string { return k.name }

// Get returns the value stored under k, if any.
func (k Key[T]) Get(s *State) (T, bool) {
	var zero T
	if k.id >= len(s.values) || s.values[k.id] == nil {
		return zero, false
	}
	v, ok := s.values[k.id].(T)
	return v, ok
}

// Set stores v under k, replacing any previous value.
func (k Key[T]) Set(s *State, v T) {
	if k.id >= len(s.values) {
		n := int(keyCount.Load())
		grown := make([]any, max(n, k.id+1))
		copy(grown, s.values)
		s.values = grown
	}
	s.values[k.id] = v
}

// PeerEndpoint is the endpoint an earlier stage of a disaggregated request
// picked, which the stage being scheduled will exchange KV with: the decode
// pick while the prefill (or encode) profile runs, the prefill pick while
// decode runs after it (prefill-first). disagg-profile-handler sets it;
// topology-affinity plugins read it.
var PeerEndpoint = NewKey[*endpoint.Endpoint]("peer-endpoint")

// PromptTokens is the request's prompt length in the model's own tokens,
// set by the first token-producer that tokenized it. Plugins that size a
// request by tokens (accelerator-capability-aware) read it and fall back
// to request.Body.EstimatedPromptTokens without it.
var PromptTokens = NewKey[int]("prompt-tokens")
