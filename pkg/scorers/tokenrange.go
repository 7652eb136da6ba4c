package scorers

import (
	"strconv"
	"strings"
	"sync"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// Shared by context-length-aware and accelerator-capability-aware: both
// read a "min-max" token range from an endpoint label and score it with one
// formula (llm-d's); they differ in how they size a request and in what a
// malformed label means.

// Constants of the range formula.
const (
	rangeOutOfRange = 0.3     // out-of-range scores are below, in-range above
	rangeUnlabeled  = 0.5     // endpoints without the label
	rangeWidthScale = 10000.0 // range width (tokens) at which the width term halves
	rangeDistScale  = 1000.0  // distance (tokens) at which an out-of-range score halves
)

// rangeScore scores n tokens against the range [lo, hi], with w = hi − lo:
// in range 0.3 + 0.7 × (0.7/(1 + w/10000) + 0.3 × (hi − n)/w), or 1 when
// w = 0, so in (0.3, 1]; out of range 0.3/(1 + d/1000) with d the distance
// to the nearer bound, so in [0, 0.3).
func rangeScore(n, lo, hi int) float64 {
	if n >= lo && n <= hi {
		w := float64(hi - lo)
		if w == 0 {
			return 1
		}
		raw := 0.7/(1+w/rangeWidthScale) + 0.3*float64(hi-n)/w
		return rangeOutOfRange + (1-rangeOutOfRange)*raw
	}
	d := lo - n
	if n > hi {
		d = n - hi
	}
	return rangeOutOfRange / (1 + float64(d)/rangeDistScale)
}

// rangeLabel is a label holding a "min-max" token range, read and parsed
// once per endpoint (endpoint.Derive) rather than per request.
type rangeLabel struct {
	name string
	key  *endpoint.DerivedKey[labelRange]
}

// labelRange is one endpoint's range: has is false without the label, ok
// false when its value is malformed.
type labelRange struct {
	lo, hi  int
	has, ok bool
}

// rangeKeys hold one key per label name, so plugins reading the same label
// share its parsed values.
var rangeKeys sync.Map // label name → *endpoint.DerivedKey[labelRange]

func newRangeLabel(name string) rangeLabel {
	key, _ := rangeKeys.LoadOrStore(name, new(endpoint.DerivedKey[labelRange]))
	return rangeLabel{name: name, key: key.(*endpoint.DerivedKey[labelRange])}
}

// read returns e's range.
func (l rangeLabel) read(e *endpoint.Endpoint) labelRange {
	return endpoint.Derive(e, l.key, func(e *endpoint.Endpoint) labelRange {
		v, has := e.Labels[l.name]
		if !has {
			return labelRange{}
		}
		lo, hi, ok := parseRange(v)
		return labelRange{lo: lo, hi: hi, has: true, ok: ok}
	})
}

// parseRange parses "min-max": two non-negative decimal integers, spaces
// around each allowed (as llm-d trims them), with min <= max.
func parseRange(v string) (lo, hi int, ok bool) {
	a, b, found := strings.Cut(v, "-")
	if !found {
		return 0, 0, false
	}
	lo, ok1 := natural(a)
	hi, ok2 := natural(b)
	if !ok1 || !ok2 || lo > hi {
		return 0, 0, false
	}
	return lo, hi, true
}

// natural parses a non-negative decimal integer; digits only, so no sign
// (a "-" would have been taken as the separator, and "+" is not a range).
func natural(s string) (int, bool) {
	s = strings.TrimSpace(s)
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(s) // fails only on overflow here
	return n, err == nil
}

// promptLength is the request's estimated prompt tokens (bytes/4), 0
// without a body.
func promptLength(req *scheduler.Request) int {
	if req == nil || req.Body == nil {
		return 0
	}
	return req.Body.EstimatedPromptTokens()
}

// requestTokens is the request's prompt tokens as a token-producer counted
// them, else promptLength's estimate.
func requestTokens(state *scheduler.State, req *scheduler.Request) int {
	if state != nil {
		if n, ok := scheduler.PromptTokens.Get(state); ok {
			return n
		}
	}
	return promptLength(req)
}
