package latency

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"
)

// TestRegressionLearnsALinearLatency: from noisy samples of a known linear
// law the model predicts it within a few per cent, not before minSamples.
func TestRegressionLearnsALinearLatency(t *testing.T) {
	t.Parallel()
	law := func(x []float64) float64 { return 20 + 35*x[1] + 4*x[2] + 0.5*x[3] }
	r := newRegression(4)
	rng := rand.New(rand.NewPCG(1, 2))
	sample := func() []float64 {
		return []float64{1, rng.Float64() * 8, float64(rng.IntN(20)), float64(rng.IntN(64))}
	}
	for i := range 2000 {
		x := sample()
		if _, ok := r.predict(x); ok != (i >= minSamples) {
			t.Fatalf("after %d samples ready = %v", i, ok)
		}
		r.observe(x, law(x)*(1+0.02*rng.NormFloat64()))
	}
	for range 50 {
		x := sample()
		got, _ := r.predict(x)
		if want := law(x); math.Abs(got-want) > 0.05*want+2 {
			t.Errorf("predict(%v) = %.1f, want %.1f", x, got, want)
		}
	}
	if got, _ := r.predict([]float64{1, -100, 0, 0}); got != 0 {
		t.Errorf("a negative prediction is clamped: got %v", got)
	}
}

// TestRegressionFollowsAChange: when the law changes, the decayed model
// follows within a few hundred samples.
func TestRegressionFollowsAChange(t *testing.T) {
	t.Parallel()
	r := newRegression(2)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, slope := range []float64{10, 30} {
		for range 1500 {
			x := []float64{1, rng.Float64() * 10}
			r.observe(x, 5+slope*x[1])
		}
	}
	if got, _ := r.predict([]float64{1, 5}); math.Abs(got-155) > 8 {
		t.Errorf("after the change predict(5) = %.1f, want 155", got)
	}
}

func TestRegressionDegenerateAndConcurrent(t *testing.T) {
	t.Parallel()
	r := newRegression(3)
	for range 100 { // one feature never varies: the ridge keeps the fit finite
		r.observe([]float64{1, 2, 0}, 50)
	}
	if got, ok := r.predict([]float64{1, 2, 0}); !ok || math.Abs(got-50) > 1 {
		t.Errorf("constant samples: predict = %v, %v; want 50", got, ok)
	}
	r.observe([]float64{1, 2, 0}, math.NaN()) // ignored
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				x := []float64{1, float64(i % 7), float64(g)}
				r.observe(x, 3*x[1]+x[2])
				r.predict(x)
			}
		}()
	}
	wg.Wait()
	if n := r.samples(); n != 2100 {
		t.Errorf("samples = %d, want 2100", n)
	}
}
