// Package latency predicts each endpoint's time to first token and time per
// output token from what the EPP observes of its own requests, and scores
// endpoints by the predictions: GIE's and llm-d's predicted-latency-producer
// and latency-scorer, with the model in process instead of XGBoost sidecars.
package latency

import (
	"math"
	"sync"
	"sync/atomic"
)

// Regression constants. The model forgets old samples geometrically so it
// follows a fleet whose load or version changes; 0.998 keeps an effective
// memory of about 500 requests.
const (
	decay       = 0.998
	minSamples  = 32   // no prediction before this many samples
	solveEvery  = 8    // refit after this many new samples
	ridgeFactor = 1e-3 // of each diagonal entry, keeps a rank-poor fit stable
)

// regression is an online ridge regression y ≈ w·x over a fixed number of
// features, refitted from exponentially decayed sufficient statistics.
// Observe and predict are safe for concurrent use; predict never blocks on
// a refit.
type regression struct {
	dim int

	mu    sync.Mutex
	xx    []float64 // dim × dim, row-major: Σ decay^age · x xᵀ
	xy    []float64 // Σ decay^age · x y
	n     int       // samples observed
	since int       // samples since the last refit

	weights atomic.Pointer[[]float64] // nil until minSamples were seen
}

func newRegression(dim int) *regression {
	return &regression{dim: dim, xx: make([]float64, dim*dim), xy: make([]float64, dim)}
}

// observe adds one sample; x must have dim entries.
func (r *regression) observe(x []float64, y float64) {
	if math.IsNaN(y) || math.IsInf(y, 0) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.xx {
		r.xx[i] *= decay
	}
	for i, xi := range x {
		r.xy[i] = r.xy[i]*decay + xi*y
		row := r.xx[i*r.dim : (i+1)*r.dim]
		for j, xj := range x {
			row[j] += xi * xj
		}
	}
	r.n++
	r.since++
	if r.n >= minSamples && (r.since >= solveEvery || r.weights.Load() == nil) {
		r.since = 0
		if w, ok := solve(r.xx, r.xy, r.dim); ok {
			r.weights.Store(&w)
		}
	}
}

// predict returns w·x, at least 0, and whether the model is ready.
func (r *regression) predict(x []float64) (float64, bool) {
	w := r.weights.Load()
	if w == nil {
		return 0, false
	}
	y := 0.0
	for i, xi := range x {
		y += (*w)[i] * xi
	}
	return max(0, y), true
}

// samples returns how many samples the model has seen.
func (r *regression) samples() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// solve returns w with (xx + λ diag(xx)) w = xy by Gaussian elimination
// with partial pivoting; false when the system is singular even so. The
// ridge scales with each feature's own magnitude, so features of very
// different ranges (an intercept of 1, token counts in thousands, queue
// lengths) are damped alike.
func solve(xx, xy []float64, dim int) ([]float64, bool) {
	// Augmented matrix [A | b].
	m := make([]float64, dim*(dim+1))
	for i := range dim {
		copy(m[i*(dim+1):], xx[i*dim:(i+1)*dim])
		m[i*(dim+1)+i] += ridgeFactor*xx[i*dim+i] + 1e-9
		m[i*(dim+1)+dim] = xy[i]
	}
	row := func(i int) []float64 { return m[i*(dim+1) : (i+1)*(dim+1)] }
	for col := range dim {
		pivot := col
		for i := col + 1; i < dim; i++ {
			if math.Abs(row(i)[col]) > math.Abs(row(pivot)[col]) {
				pivot = i
			}
		}
		if math.Abs(row(pivot)[col]) < 1e-12 {
			return nil, false
		}
		if pivot != col {
			a, b := row(pivot), row(col)
			for k := range a {
				a[k], b[k] = b[k], a[k]
			}
		}
		p := row(col)
		for i := col + 1; i < dim; i++ {
			r := row(i)
			f := r[col] / p[col]
			for k := col; k <= dim; k++ {
				r[k] -= f * p[k]
			}
		}
	}
	w := make([]float64, dim)
	for i := dim - 1; i >= 0; i-- {
		r := row(i)
		s := r[dim]
		for k := i + 1; k < dim; k++ {
			s -= r[k] * w[k]
		}
		w[i] = s / r[i]
	}
	for _, v := range w {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, false
		}
	}
	return w, true
}
