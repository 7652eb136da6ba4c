// Package scorers holds the built-in scorers: plugins that rate every
// candidate endpoint in [0, 1] for a request, higher meaning better.
//
// Every scorer follows the scheduler.Scorer contract: it returns a new slice
// index-aligned with its input, never modifies the input slice or the
// endpoints, and is safe for concurrent calls. Scoring is on the hot path of
// every request, so a scorer reads each endpoint once and allocates nothing
// but its result slice.
//
// Stateful scorers (in-flight tracking, session affinity, no-hit LRU) learn
// from the request lifecycle hooks and keep their state keyed by the
// endpoint's "ip:port" (Endpoint.HostPort): it survives a label change
// (which gives the endpoint a new *Endpoint) and is the identity the proxy
// reports for the endpoint that actually served a request.
package scorers

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// inverseMinMax maps raw values in out, in place, to (max−v)/(max−min): the
// smallest value scores 1 and the largest 0. When every value is equal there
// is nothing to prefer and all score 1.
func inverseMinMax(out []float64) { inverseMinMaxFloor(out, 0) }

// inverseMinMaxFloor is inverseMinMax with the spread hi − lo taken as at
// least floor, so differences smaller than floor move scores only part of
// the way: the lowest value still scores 1, the highest 1 − (hi − lo)/floor.
func inverseMinMaxFloor(out []float64, floor float64) {
	if len(out) == 0 {
		return
	}
	lo, hi := out[0], out[0]
	for _, v := range out[1:] {
		lo, hi = min(lo, v), max(hi, v)
	}
	if hi == lo {
		fill(out, 1)
		return
	}
	if hi-lo >= floor {
		inv := 1 / (hi - lo)
		for i, v := range out {
			out[i] = (hi - v) * inv
		}
		return
	}
	inv := 1 / floor
	for i, v := range out {
		out[i] = 1 - (v-lo)*inv
	}
}

// fill sets every element of out to v.
func fill(out []float64, v float64) {
	for i := range out {
		out[i] = v
	}
}

// unitClamp limits v to [0, 1]; NaN becomes 0.
func unitClamp(v float64) float64 {
	if !(v > 0) { // also NaN
		return 0
	}
	return min(v, 1)
}

// Duration is a parameter holding a duration. It accepts a Go duration
// string ("2m", "90s") or a JSON number of seconds, so both upstream spellings
// of a timeout decode.
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("duration: want a string such as \"2m\" or a number of seconds, got %s", b)
	}
	if math.IsInf(secs, 0) || math.Abs(secs) > float64(math.MaxInt64)/float64(time.Second) {
		return fmt.Errorf("duration: %s seconds is out of range", b)
	}
	*d = Duration(secs * float64(time.Second))
	return nil
}

// MarshalJSON implements json.Marshaler, writing the Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(strconv.Quote(time.Duration(d).String())), nil
}

// String returns the Go duration string.
func (d Duration) String() string { return time.Duration(d).String() }

// seconds converts a float number of seconds (the upstream form of TTL
// parameters) to a duration.
func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
