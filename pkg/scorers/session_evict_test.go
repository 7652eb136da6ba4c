package scorers

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// BenchmarkSessionEviction is one eviction of a full session_id map at the
// default bound (100,000 bindings, all live): the pause a new session's
// request sees under the map's write lock, once per 10,000 new sessions.
func BenchmarkSessionEviction(b *testing.B) {
	s := mustBuild[*SessionAffinity](b, SessionAffinityRegistration(),
		`{"strategy":"session_id","sessionIdConfig":{"evictionTtlSeconds":3600}}`, scHandle(newSCClock(), nil))
	now := scEpoch
	next := uint64(0)
	refill := func() {
		for len(s.sessions) < s.maxSessions {
			next++
			now = now.Add(time.Microsecond)
			s.sessions[next*0x9e3779b97f4a7c15] = binding{hostPort: "10.0.0.1:8000", used: now}
		}
	}
	refill()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		refill()
		b.StartTimer()
		s.mu.Lock()
		s.evictLocked(now)
		s.mu.Unlock()
	}
}

// TestNthSmallest checks the selection against a sort on random, sorted,
// reversed, constant and few-valued inputs, for every k of small sizes.
func TestNthSmallest(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(7, 7))
	inputs := map[string]func(n int) []int64{
		"random":   func(n int) []int64 { return genInts(n, func(int) int64 { return r.Int64() }) },
		"sorted":   func(n int) []int64 { return genInts(n, func(i int) int64 { return int64(i) }) },
		"reversed": func(n int) []int64 { return genInts(n, func(i int) int64 { return int64(n - i) }) },
		"constant": func(n int) []int64 { return genInts(n, func(int) int64 { return 42 }) },
		"few":      func(n int) []int64 { return genInts(n, func(int) int64 { return r.Int64N(3) }) },
	}
	for name, gen := range inputs {
		for _, n := range []int{1, 2, 3, 7, 64, 1000} {
			xs := gen(n)
			sorted := slices.Sorted(slices.Values(xs))
			for k := range n {
				if got := nthSmallest(slices.Clone(xs), k); got != sorted[k] {
					t.Fatalf("%s n=%d k=%d: got %d, want %d", name, n, k, got, sorted[k])
				}
			}
		}
	}
}

func genInts(n int, f func(i int) int64) []int64 {
	xs := make([]int64, n)
	for i := range xs {
		xs[i] = f(i)
	}
	return xs
}
