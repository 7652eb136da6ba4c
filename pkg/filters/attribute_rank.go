package filters

import (
	"math"
	"math/bits"
	"slices"
	"sync"

	"github.com/openepp/openepp/pkg/endpoint"
)

// The ranking rules of endpoint-attribute-filter (topK, percentile): one
// pass reads the attributes, a quickselect finds the cutoff value, a second
// pass over the values read picks the endpoints. Per request this costs
// O(n) and, beyond the result slice, no allocation: the values live in
// scratch space reused through a pool.

// scratchPool holds float64 buffers for rank.
var scratchPool = sync.Pool{New: func() any { return new([]float64) }}

// cut says which present values a ranking keeps: those better than at, and
// of those equal to at the first ties in candidate order, or all of them
// when ties < 0.
type cut struct {
	at     float64
	ties   int
	higher bool
}

// better reports whether v ranks strictly above the cutoff.
func (c *cut) better(v float64) bool {
	if c.higher {
		return v > c.at
	}
	return v < c.at
}

// rank applies the topK or percentile rule.
func (f *EndpointAttribute) rank(eps []*endpoint.Endpoint) []*endpoint.Endpoint {
	n := len(eps)
	if n == 0 {
		return eps
	}
	buf := scratchPool.Get().(*[]float64)
	defer scratchPool.Put(buf)
	if cap(*buf) < 2*n {
		*buf = make([]float64, 2*n)
	}
	// vals is aligned with eps (NaN: missing); sel holds the present
	// values for selection, which reorders them.
	vals, sel := (*buf)[:n], (*buf)[n:n:2*n]
	for i, e := range eps {
		v, ok := f.value(e)
		if !ok {
			vals[i] = math.NaN()
			continue
		}
		vals[i] = v
		sel = append(sel, v)
	}
	kept := 0
	if !f.failMissing {
		kept = n - len(sel)
	}
	c, keptPresent := f.cutoff(sel)
	kept += keptPresent
	switch kept {
	case n:
		return eps
	case 0:
		return nil
	}
	out := make([]*endpoint.Endpoint, 0, kept)
	for i, v := range vals {
		switch {
		case v != v:
			if f.failMissing {
				continue
			}
		case c.better(v):
		case v == c.at && c.ties != 0:
			c.ties--
		default:
			continue
		}
		out = append(out, eps[i])
	}
	return out
}

// cutoff finds the cut of the rule over the present values vals
// (reordering them) and how many of them it keeps.
func (f *EndpointAttribute) cutoff(vals []float64) (cut, int) {
	n := len(vals)
	c := cut{higher: f.higher, ties: -1}
	if n == 0 {
		return c, 0
	}
	if f.algo == byTopK {
		if f.k >= n {
			c.at = math.Inf(-1)
			if !f.higher {
				c.at = math.Inf(1)
			}
			return c, n // every present value; ±Inf values tie at the cut and all stay
		}
		pos := f.k - 1 // 0-based rank of the k-th best, ascending
		if f.higher {
			pos = n - f.k
		}
		c.at = nth(vals, pos)
		better := 0
		for _, v := range vals {
			if c.better(v) {
				better++
			}
		}
		c.ties = f.k - better
		return c, f.k
	}
	pos := int(math.Ceil(f.percentile * float64(n) / 100)) // multiplied first: 70×10/100 is exactly 7
	pos = min(max(pos, 1), n)
	c.at = nth(vals, pos-1)
	keptN := 0
	for _, v := range vals {
		if v == c.at || c.better(v) {
			keptN++
		}
	}
	return c, keptN
}

// nth returns the k-th smallest value of a (0-based), reordering a. It is
// a quickselect with a median-of-three pivot and a three-way partition
// (many equal values cost nothing), sorting what is left should
// partitioning degrade, so it runs in O(n) expected and O(n log n) at worst.
// a must hold no NaN.
func nth(a []float64, k int) float64 {
	lo, hi := 0, len(a)-1
	for budget := 2 * bits.Len(uint(len(a))); lo < hi; budget-- {
		if budget == 0 {
			slices.Sort(a[lo : hi+1])
			break
		}
		p := median3(a[lo], a[lo+(hi-lo)/2], a[hi])
		lt, i, gt := lo, lo, hi // [lo,lt) < p, [lt,i) == p, (gt,hi] > p
		for i <= gt {
			switch {
			case a[i] < p:
				a[lt], a[i] = a[i], a[lt]
				lt++
				i++
			case a[i] > p:
				a[i], a[gt] = a[gt], a[i]
				gt--
			default:
				i++
			}
		}
		switch {
		case k < lt:
			hi = lt - 1
		case k > gt:
			lo = gt + 1
		default:
			return p
		}
	}
	return a[k]
}

// median3 returns the median of a, b and c.
func median3(a, b, c float64) float64 {
	if a > b {
		a, b = b, a
	}
	if b > c {
		b = c
	}
	return max(a, b)
}
