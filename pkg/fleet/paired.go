package fleet

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// ComparePaired compares policy a with b seed by seed on w, whose seeds
// ran the same traffic for both: per stage, the median of the per-seed
// output tok/s and TTFT p90 ratios, how many seeds a did better on, and a
// two-sided sign test of that count, so a plugin developer can tell a win
// from a lucky seed. It returns "" when w ran a single seed.
func ComparePaired(w *WorkloadReport, a, b string) (string, error) {
	la, lb, err := ladderPair(w, a, b)
	if err != nil {
		return "", err
	}
	if w.Seeds < 2 {
		return "", nil
	}
	var stages []string
	for i := range min(len(la.Stages), len(lb.Stages), len(la.PerSeedThroughput), len(lb.PerSeedThroughput)) {
		tp := pairedRatios(la.PerSeedThroughput[i], lb.PerSeedThroughput[i], true)
		tt := pairedRatios(la.PerSeedTTFTP90[i], lb.PerSeedTTFTP90[i], false)
		stages = append(stages, fmt.Sprintf("%g QPS: throughput %s, TTFT p90 %s", la.Stages[i].QPS, tp, tt))
	}
	return fmt.Sprintf("per seed (%d seeds, paired): %s", w.Seeds, strings.Join(stages, "; ")), nil
}

// paired is one stage's per-seed ratios of a to b.
type paired struct {
	median       float64
	better, n    int // seeds a did better on, seeds that differ
	higherBetter bool
}

// pairedRatios pairs x (policy a) with y (policy b) seed by seed; a is
// better where its value is higher (throughput) or lower (latency).
func pairedRatios(x, y []float64, higherBetter bool) paired {
	p := paired{higherBetter: higherBetter}
	var ratios []float64
	for k := range min(len(x), len(y)) {
		if y[k] <= 0 || x[k] <= 0 || math.IsNaN(x[k]) || math.IsNaN(y[k]) {
			continue
		}
		ratios = append(ratios, x[k]/y[k])
		if x[k] != y[k] {
			p.n++
			if (x[k] > y[k]) == higherBetter {
				p.better++
			}
		}
	}
	if len(ratios) > 0 {
		slices.Sort(ratios)
		m := len(ratios) / 2
		p.median = ratios[m]
		if len(ratios)%2 == 0 {
			p.median = (ratios[m-1] + ratios[m]) / 2
		}
	}
	return p
}

func (p paired) String() string {
	if p.n == 0 {
		return fmt.Sprintf("%.3f× (no seed differs)", p.median)
	}
	return fmt.Sprintf("%.3f× (better on %d/%d seeds, sign test p %.2f)", p.median, p.better, p.n, signTest(p.better, p.n))
}

// signTest is the two-sided exact sign-test p-value of k successes in n
// fair coin flips: the chance of a split at least as lopsided.
func signTest(k, n int) float64 {
	if n == 0 {
		return 1
	}
	tail := min(k, n-k)
	sum := 0.0
	for i := 0; i <= tail; i++ {
		sum += binom(n, i)
	}
	return min(1, 2*sum/math.Exp2(float64(n)))
}

// binom is n choose k as a float (n ≤ 1,000 here).
func binom(n, k int) float64 {
	r := 1.0
	for i := 1; i <= k; i++ {
		r = r * float64(n-k+i) / float64(i)
	}
	return r
}
