package fleet

import (
	"math"
	"strings"
	"testing"
)

func TestSignTest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		k, n int
		want float64
	}{
		{0, 0, 1}, {4, 8, 1}, {7, 8, 0.0703125}, {8, 8, 0.0078125}, {0, 8, 0.0078125}, {1, 1, 1}, {10, 10, 0.001953125},
	} {
		if got := signTest(tc.k, tc.n); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("signTest(%d, %d) = %v, want %v", tc.k, tc.n, got, tc.want)
		}
	}
}

func TestComparePaired(t *testing.T) {
	t.Parallel()
	w := &WorkloadReport{Name: "w", Seeds: 4, Policies: []PolicyLadder{
		{Policy: "a", Stages: []StageResult{{QPS: 10}}, PerSeedThroughput: [][]float64{{110, 105, 99, 120}}, PerSeedTTFTP90: [][]float64{{90, 100, 80, 70}}},
		{Policy: "b", Stages: []StageResult{{QPS: 10}}, PerSeedThroughput: [][]float64{{100, 100, 100, 100}}, PerSeedTTFTP90: [][]float64{{100, 100, 100, 100}}},
	}}
	got, err := ComparePaired(w, "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"per seed (4 seeds, paired): 10 QPS:",
		"throughput 1.075× (better on 3/4 seeds, sign test p 0.62)", // ratios 0.99 1.05 1.10 1.20
		"TTFT p90 0.850× (better on 3/3 seeds, sign test p 0.25)",   // 0.7 0.8 0.9 1.0; the tie is no seed
	} {
		if !strings.Contains(got, want) {
			t.Errorf("%q\nlacks %q", got, want)
		}
	}
	w.Seeds = 1
	if got, _ := ComparePaired(w, "a", "b"); got != "" {
		t.Errorf("one seed: %q, want nothing", got)
	}
	if _, err := ComparePaired(w, "a", "c"); err == nil {
		t.Error("an unknown policy was accepted")
	}
}
