package scorers

import (
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
)

// coldSource reports a match with no hits; warmSource one with a hit.
func coldSource() *scSource {
	return &scSource{name: scheduler.TypedName{Type: "approx-prefix-cache-producer", Name: "prefix-cache-scorer"}, match: prefix.NewMatch(8, 16)}
}

func warmSource(e *endpoint.Endpoint) *scSource {
	src := coldSource()
	src.match.Set(e, 3)
	return src
}

func newNoHit(t *testing.T, raw string, src prefix.Source) *NoHitLRU {
	t.Helper()
	s := mustBuild[*NoHitLRU](t, NoHitLRURegistration(), raw, nil)
	s.SetSource(src)
	return s
}

func TestNoHitLRUResolve(t *testing.T) {
	t.Parallel()
	src := &scSource{name: scheduler.TypedName{Type: "prefix-cache-scorer", Name: "prefix-cache-scorer"}}
	plugins := map[string]scheduler.Plugin{
		"prefix-cache-scorer": src,
		"queue":               scPlugin{name: scheduler.TypedName{Type: QueueDepthType, Name: "queue"}},
	}
	h := (&scheduler.Handle{}).WithLookup(func(name string) (scheduler.Plugin, bool) {
		p, ok := plugins[name]
		return p, ok
	})
	cases := []struct {
		name    string
		raw     string
		wantErr string
	}{
		{"default name", "", ""},
		{"matching type", `{"prefixPluginType":"prefix-cache-scorer"}`, ""},
		{"missing plugin", `{"prefixPluginName":"precise"}`, `prefixPluginName: no plugin named "precise"`},
		{"not a prefix source", `{"prefixPluginName":"queue"}`, `plugin "queue" (type "queue-scorer") does not provide prefix matches`},
		{"wrong type", `{"prefixPluginType":"precise-prefix-cache-scorer"}`, `prefixPluginType: plugin "prefix-cache-scorer" has type "prefix-cache-scorer", want "precise-prefix-cache-scorer"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := mustBuild[*NoHitLRU](t, NoHitLRURegistration(), tc.raw, nil)
			err := s.Resolve(h)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Resolve: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Resolve = %v, want an error containing %q", err, tc.wantErr)
			case tc.wantErr == "" && s.source != src:
				t.Fatal("Resolve did not keep the source")
			}
		})
	}
	if err := mustBuild[*NoHitLRU](t, NoHitLRURegistration(), "", nil).Resolve(&scheduler.Handle{}); err == nil {
		t.Error("Resolve without any plugins succeeded")
	}
}

func TestNoHitLRUOrdering(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(5, nil)
	cases := []struct {
		name    string
		lruSize int
		cold    []int // targets of cold requests, in order
		cands   []int // candidates scored
		want    []float64
	}{
		{"no history", 8, nil, []int{0, 1, 2}, []float64{1, 1, 1}},
		{"never used first, then least recent", 8, []int{0, 1, 2}, []int{0, 1, 2, 3}, []float64{0.75, 0.5, 0.25, 1}},
		{"re-use moves to most recent", 8, []int{0, 1, 2, 0}, []int{0, 1, 2}, []float64{0.25, 0.75, 0.5}},
		{"ranks among the candidates", 8, []int{0, 1, 2, 3}, []int{3, 1}, []float64{1.0 / 3, 2.0 / 3}},
		{"evicted endpoints count as never used", 2, []int{0, 1, 2}, []int{0, 1, 2}, []float64{1, 2.0 / 3, 1.0 / 3}},
		{"single used candidate", 8, []int{4}, []int{4}, []float64{0.5}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := NewNoHitLRU("n", NoHitLRUParams{PrefixPluginName: "p", LRUSize: tc.lruSize})
			if err != nil {
				t.Fatal(err)
			}
			s.SetSource(coldSource())
			for _, i := range tc.cold {
				s.PreRequest(scCtx, scState(), nil, scResult(eps[i]))
			}
			var cands []*endpoint.Endpoint
			for _, i := range tc.cands {
				cands = append(cands, eps[i])
			}
			if diff := cmp.Diff(tc.want, s.Score(scCtx, scState(), nil, cands), approx); diff != "" {
				t.Errorf("scores (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNoHitLRUWarmRequests(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(3, nil)
	s := newNoHit(t, "", warmSource(eps[2]))
	if diff := cmp.Diff([]float64{0.5, 0.5, 0.5}, s.Score(scCtx, scState(), nil, eps)); diff != "" {
		t.Errorf("warm scores (-want +got):\n%s", diff)
	}
	// Warm requests do not touch the LRU.
	s.PreRequest(scCtx, scState(), nil, scResult(eps[0]))
	s.SetSource(coldSource())
	if diff := cmp.Diff([]float64{1, 1, 1}, s.Score(scCtx, scState(), nil, eps)); diff != "" {
		t.Errorf("cold scores after a warm request (-want +got):\n%s", diff)
	}
	// A request the source has no match for counts as cold, as does a
	// scorer that was never given a source.
	for _, src := range []prefix.Source{&scSource{}, nil} {
		s := newNoHit(t, "", src)
		s.PreRequest(scCtx, scState(), nil, scResult(eps[0]))
		if diff := cmp.Diff([]float64{0.5, 1, 1}, s.Score(scCtx, scState(), nil, eps)); diff != "" {
			t.Errorf("no match (-want +got):\n%s", diff)
		}
	}
}

// TestNoHitLRURankMatchesReference compares the bitmap ranking with a sort,
// over random histories, subsets, and LRUs larger than the stack bitmap.
func TestNoHitLRURankMatchesReference(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	for _, size := range []int{1, 63, 64, 65, 1024, 1500} {
		eps := scEndpoints(size+size/4+1, nil)
		s, err := NewNoHitLRU("n", NoHitLRUParams{PrefixPluginName: "p", LRUSize: size})
		if err != nil {
			t.Fatal(err)
		}
		s.SetSource(coldSource())
		for range 3 * size {
			s.PreRequest(scCtx, scState(), nil, scResult(eps[r.IntN(len(eps))]))
		}
		cands := slices.Clone(eps)
		r.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
		cands = cands[:1+r.IntN(len(cands))]
		got := s.Score(scCtx, scState(), nil, cands)
		if diff := cmp.Diff(referenceRanks(&s.book.lru, cands), got, approx); diff != "" {
			t.Errorf("lruSize %d (-want +got):\n%s", size, diff)
		}
	}
}

func referenceRanks(r *recency, cands []*endpoint.Endpoint) []float64 {
	var used []int // LRU positions of the used candidates
	for _, e := range cands {
		if n, ok := r.index[e.HostPort]; ok {
			used = append(used, n.pos)
		}
	}
	slices.Sort(used)
	out := make([]float64, len(cands))
	for i, e := range cands {
		n, ok := r.index[e.HostPort]
		if !ok {
			out[i] = 1
			continue
		}
		rank, _ := slices.BinarySearch(used, n.pos)
		out[i] = float64(len(used)-rank) / float64(len(used)+1)
	}
	return out
}

func TestNoHitLRUConcurrent(t *testing.T) {
	t.Parallel()
	eps := scEndpoints(30, nil)
	s := newNoHit(t, `{"lruSize":16}`, coldSource())
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				st := scState()
				_ = s.Score(scCtx, st, nil, eps)
				s.PreRequest(scCtx, st, nil, scResult(eps[(g*7+i)%len(eps)]))
			}
		}()
	}
	wg.Wait()
	if n := len(s.book.lru.order); n != 16 {
		t.Errorf("LRU holds %d endpoints, want 16", n)
	}
	for i, n := range s.book.lru.order {
		if n.pos != i || s.book.lru.index[n.key] != n {
			t.Fatalf("LRU inconsistent at %d: %+v", i, n)
		}
	}
}

// TestNoHitLRUInherit: every reload rebuilds the scorer; the new instance
// keeps the cold picks at its own size.
func TestNoHitLRUInherit(t *testing.T) {
	t.Parallel()
	old := mustBuild[*NoHitLRU](t, NoHitLRURegistration(), `{"lruSize":4}`, nil)
	for _, k := range []string{"a:1", "b:1", "c:1", "d:1"} {
		old.book.lru.touch(k)
	}
	next := mustBuild[*NoHitLRU](t, NoHitLRURegistration(), `{"lruSize":2}`, nil)
	next.Inherit(old)
	if next.book != old.book {
		t.Fatal("the rebuilt scorer did not keep the LRU")
	}
	next.book.lru.touch("e:1")
	var keys []string
	for i, n := range next.book.lru.order {
		keys = append(keys, n.key)
		if n.pos != i || next.book.lru.index[n.key] != n {
			t.Errorf("entry %d (%s) has position %d", i, n.key, n.pos)
		}
	}
	if diff := cmp.Diff([]string{"d:1", "e:1"}, keys); diff != "" {
		t.Errorf("after a cold pick at the smaller size, least recent first (-want +got):\n%s", diff)
	}
	if len(next.book.lru.index) != 2 {
		t.Errorf("index holds %d entries, want 2", len(next.book.lru.index))
	}
}
