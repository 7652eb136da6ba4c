package burst

import (
	"cmp"
	"math"
	"slices"
	"sort"

	"github.com/openepp/openepp/pkg/endpoint"
)

// entry is one request of a window.
type entry struct {
	id     string
	hashes []uint64             // chained block hashes of its prompt
	eps    []*endpoint.Endpoint // its candidates
	// assigned is where assign placed it; nil: no affinity (its prompt
	// shares nothing with the window's others), the other scorers decide.
	assigned *endpoint.Endpoint
}

// unit is what assign places: an identical group (two or more requests
// with one prompt), or a single request sharing at least minColocateBlocks
// leading blocks with another of the window.
type unit struct {
	members   []*entry
	identical bool
	hashes    []uint64
	first     int // arrival index of its first member, for a stable order
}

// assign places a window's entries. Identical groups go first, kept whole
// on one endpoint (or, with maxPerReplica k, k to an endpoint, filling one
// before spilling to the next least loaded), then the prefix-sharing
// singles; within each kind, longer prefixes first, so shorter ones meet
// the richest set of placed prefixes. A unit goes to the endpoint already
// holding a unit that shares at least minColocateBlocks leading blocks with
// it while that endpoint is under its fair share of the window (the longest
// such share first); otherwise to the least loaded endpoint, where load is
// what the window placed there (requests, or tokens: a unit's prefix once
// per endpoint, less what units placed there already share). Ties go by a
// hash of the prompt and the endpoint, so equal windows do not all pile on
// the first candidate.
func assign(entries []*entry, p *Params) {
	units := unitsOf(entries, p.MinColocateBlocks)
	if len(units) == 0 {
		return
	}
	slices.SortStableFunc(units, func(a, b *unit) int {
		if a.identical != b.identical {
			if a.identical {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(len(b.hashes), len(a.hashes)); c != 0 {
			return c
		}
		return cmp.Compare(a.first, b.first)
	})
	w := &placement{p: p, load: map[string]float64{}, placed: map[string][][]uint64{}}
	for _, u := range units {
		w.total += w.cost(u, nil, len(u.members))
	}
	for _, u := range units {
		w.place(u)
	}
}

// placement is assign's running state over one window.
type placement struct {
	p      *Params
	load   map[string]float64    // by HostPort: what the window placed there
	placed map[string][][]uint64 // by HostPort: the prompts of units placed there
	total  float64               // the window's whole load
}

func (w *placement) place(u *unit) {
	eps := u.members[0].eps
	if len(eps) == 0 {
		return
	}
	fair := math.Ceil(w.total / float64(len(eps)))
	used := map[string]bool{}
	rest := u.members
	for len(rest) > 0 {
		if len(used) == len(eps) {
			clear(used) // more members than the cap allows everywhere: start another round
		}
		r := w.pick(u, eps, used, fair)
		n := len(rest)
		if k := w.p.MaxPerReplica; k > 0 {
			n = min(n, k)
		}
		for _, m := range rest[:n] {
			m.assigned = r
		}
		w.load[r.HostPort] += w.cost(u, r, n)
		w.placed[r.HostPort] = append(w.placed[r.HostPort], u.hashes)
		used[r.HostPort] = true
		rest = rest[n:]
	}
}

// pick chooses the endpoint for (part of) u among eps not yet used by it.
func (w *placement) pick(u *unit, eps []*endpoint.Endpoint, used map[string]bool, fair float64) *endpoint.Endpoint {
	var best *endpoint.Endpoint
	bestShare, bestLoad, bestTie := -1, math.Inf(1), uint64(0)
	for _, e := range eps {
		if used[e.HostPort] {
			continue
		}
		share := 0
		if m := w.p.MinColocateBlocks; m > 0 && w.load[e.HostPort] < fair {
			if s := shared(w.placed[e.HostPort], u.hashes); s >= m {
				share = s
			}
		}
		load, tie := w.load[e.HostPort], tieBreak(u.hashes, e.HostPort)
		better := share > bestShare ||
			share == bestShare && (load < bestLoad || load == bestLoad && tie < bestTie)
		if best == nil || better {
			best, bestShare, bestLoad, bestTie = e, share, load, tie
		}
	}
	return best
}

// cost is what placing n members of u on r adds to r's load (r nil: on an
// endpoint holding nothing).
func (w *placement) cost(u *unit, r *endpoint.Endpoint, n int) float64 {
	if w.p.BalanceBy != balanceTokens {
		return float64(n)
	}
	held := 0
	if r != nil {
		held = shared(w.placed[r.HostPort], u.hashes)
	}
	return float64((len(u.hashes) - held) * w.p.BlockSizeTokens)
}

// unitsOf groups a window's entries into units; entries without blocks
// and singles sharing too little form none.
func unitsOf(entries []*entry, minColocate int) []*unit {
	byPrompt := map[uint64]*unit{}
	var order []*unit
	lead := map[uint64]int{} // entries by their minColocate-th block
	for i, e := range entries {
		if len(e.hashes) == 0 {
			continue
		}
		key := e.hashes[len(e.hashes)-1] // chained: equal last hashes, equal prompts
		u, ok := byPrompt[key]
		if !ok {
			u = &unit{hashes: e.hashes, first: i}
			byPrompt[key] = u
			order = append(order, u)
		}
		u.members = append(u.members, e)
		if minColocate > 0 && len(e.hashes) >= minColocate {
			lead[e.hashes[minColocate-1]]++
		}
	}
	var out []*unit
	for _, u := range order {
		switch {
		case len(u.members) > 1:
			u.identical = true
			out = append(out, u)
		case minColocate > 0 && len(u.hashes) >= minColocate && lead[u.hashes[minColocate-1]] > 1:
			out = append(out, u)
		}
	}
	return out
}

// shared is the longest leading run of blocks h shares with any of list.
// Hashes are chained, so prompts equal at block i are equal before it:
// the common run is found by binary search.
func shared(list [][]uint64, h []uint64) int {
	best := 0
	for _, x := range list {
		n := min(len(x), len(h))
		if n <= best || x[best] != h[best] {
			continue
		}
		best += sort.Search(n-best, func(i int) bool { return x[best+i] != h[best+i] })
	}
	return best
}

// tieBreak is a hash of a prompt and an endpoint.
func tieBreak(hashes []uint64, hostPort string) uint64 {
	h := uint64(14695981039346656037)
	if len(hashes) > 0 {
		h ^= hashes[len(hashes)-1]
	}
	for i := 0; i < len(hostPort); i++ {
		h = (h ^ uint64(hostPort[i])) * 1099511628211
	}
	return h
}
