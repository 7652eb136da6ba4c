package scorers

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestSessionTableMatchesModel drives a sessionTable and a plain slice
// (most recent first) with the same random binds and expiries, and checks
// that they always hold the same bindings in the same order.
func TestSessionTableMatchesModel(t *testing.T) {
	t.Parallel()
	type entry struct {
		key      uint64
		hostPort string
		used     int64
	}
	rng := rand.New(rand.NewPCG(3, 4))
	tab := newSessionTable()
	var model []entry
	const max = 40
	now := int64(0)
	for step := range 20000 {
		now += rng.Int64N(10)
		if rng.IntN(20) == 0 {
			cutoff, limit := now-rng.Int64N(200), 1+rng.IntN(8)
			want := 0
			for len(model) > 0 && want < limit && model[len(model)-1].used <= cutoff {
				model, want = model[:len(model)-1], want+1
			}
			if got := tab.expire(cutoff, limit); got != want {
				t.Fatalf("step %d: expired %d, want %d", step, got, want)
			}
		} else {
			key, hp := uint64(rng.IntN(60)), fmt.Sprintf("10.0.0.%d:8000", rng.IntN(4))
			i := slices.IndexFunc(model, func(e entry) bool { return e.key == key })
			wantEvict := false
			if i >= 0 {
				model = slices.Delete(model, i, i+1)
			} else if len(model) >= max {
				model, wantEvict = model[:len(model)-1], true
			}
			model = slices.Insert(model, 0, entry{key, hp, now})
			if got := tab.bind(key, hp, now, max); got != wantEvict {
				t.Fatalf("step %d: bind evicted %v, want %v", step, got, wantEvict)
			}
		}
		if tab.len() != len(model) || tab.order.Len() != len(model) {
			t.Fatalf("step %d: %d bindings (%d listed), want %d", step, tab.len(), tab.order.Len(), len(model))
		}
		id := tab.order.Front()
		for i, e := range model {
			s := tab.slots[id]
			if s.key != e.key || s.hostPort != e.hostPort || s.used != e.used {
				t.Fatalf("step %d: position %d holds %+v, want %+v", step, i, s, e)
			}
			if hp, ok := tab.lookup(e.key); !ok || hp != e.hostPort {
				t.Fatalf("step %d: lookup(%d) = %q, %v", step, e.key, hp, ok)
			}
			id = tab.order.Next(id)
		}
	}
	if len(tab.slots) > max {
		t.Errorf("%d slots allocated for at most %d bindings", len(tab.slots), max)
	}
}

// BenchmarkSessionBind binds sessions into a full table of the default
// bound (100,000, all live): each new session evicts the least recently
// used one, the work a request does under the scorer's write lock.
func BenchmarkSessionBind(b *testing.B) {
	s := mustBuild[*SessionAffinity](b, SessionAffinityRegistration(),
		`{"strategy":"session_id","sessionIdConfig":{"evictionTtlSeconds":3600}}`, scHandle(newSCClock(), nil))
	ids := make([]string, 2*DefaultMaxSessions)
	for i := range ids {
		ids[i] = fmt.Sprintf("session-%d", i)
	}
	for _, id := range ids[:DefaultMaxSessions] {
		s.bind(id, "10.0.0.1:8000")
	}
	b.ResetTimer()
	for i := range b.N {
		s.bind(ids[i%len(ids)], "10.0.0.1:8000")
	}
}

// BenchmarkSessionSweep is one batch of a sweep: sweepBatch expired
// bindings removed from a table of 100,000, the longest the scorer's write
// lock is held while expiring.
func BenchmarkSessionSweep(b *testing.B) {
	tab := newSessionTable()
	key := uint64(0)
	fill := func() {
		for tab.len() < DefaultMaxSessions {
			key++
			tab.bind(key*0x9e3779b97f4a7c15, "10.0.0.1:8000", int64(key), DefaultMaxSessions)
		}
	}
	fill()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		fill()
		b.StartTimer()
		tab.expire(int64(time.Hour), sweepBatch)
	}
}
