package loadgen

import (
	"math"
	"slices"
	"time"
)

// Percentiles of a latency sample, in microseconds. N is the sample size;
// every field is zero for an empty sample.
type Percentiles struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// Summarise computes the percentiles of d (nearest rank, the smallest
// value with at least q of the sample at or below it). It sorts d.
func Summarise(d []time.Duration) Percentiles {
	if len(d) == 0 {
		return Percentiles{}
	}
	slices.Sort(d)
	var sum time.Duration
	for _, v := range d {
		sum += v
	}
	return Percentiles{
		N:    len(d),
		Mean: us(sum / time.Duration(len(d))),
		P50:  us(rank(d, 0.50)),
		P90:  us(rank(d, 0.90)),
		P99:  us(rank(d, 0.99)),
		P999: us(rank(d, 0.999)),
		Max:  us(d[len(d)-1]),
	}
}

// rank returns the nearest-rank q-quantile of the sorted sample d.
func rank(d []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(d)))) - 1
	return d[max(0, min(i, len(d)-1))]
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
