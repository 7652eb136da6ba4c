package fleet

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Class is one kind of client traffic, for studies of priority and flow
// control: a share of the requests, the priority their InferenceObjective
// would give them, and their fairness ID. A run without classes sends
// every request at priority 0 in the default flow.
type Class struct {
	Name     string
	Share    float64
	Priority int
	// TTFTSLOMs and TPOTSLOMs, when > 0, are sent as the class's
	// x-slo-ttft-ms and x-slo-tpot-ms request headers, the objectives the
	// latency predictor's plugins route and admit by; flow control's
	// slo-deadline-ordering-policy orders by the TTFT one (queue.go).
	TTFTSLOMs, TPOTSLOMs float64
}

// maxClasses bounds a run's classes (a flight stores its class in a byte).
const maxClasses = 16

// ParseClasses reads "name:share:priority[:ttftSLO[:tpotSLO]],…", for
// example "critical:0.2:3:250,batch:0.8:-1" or "interactive:0.2:0:250ms,
// batch:0.8:0:10s"; an objective is milliseconds or a Go duration; shares
// are normalised to sum to 1; a 0 objective sends no header.
func ParseClasses(s string) ([]Class, error) {
	var out []Class
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		parts := strings.Split(item, ":")
		if len(parts) < 3 || len(parts) > 5 {
			return nil, fmt.Errorf("class %q: want name:share:priority[:ttftSLO[:tpotSLO]]", item)
		}
		var slo [2]float64
		for i, v := range parts[3:] {
			ms, err := parseObjective(v)
			if err != nil {
				return nil, fmt.Errorf("class %q: SLO %q: %w", item, v, err)
			}
			slo[i] = ms
		}
		share, err := strconv.ParseFloat(parts[1], 64)
		if err != nil {
			return nil, fmt.Errorf("class %q: share: %w", item, err)
		}
		prio, err := strconv.Atoi(parts[2])
		if err != nil {
			return nil, fmt.Errorf("class %q: priority: %w", item, err)
		}
		out = append(out, Class{Name: strings.TrimSpace(parts[0]), Share: share, Priority: prio, TTFTSLOMs: slo[0], TPOTSLOMs: slo[1]})
	}
	if err := validateClasses(out); err != nil {
		return nil, err
	}
	return normalised(out), nil
}

var errObjective = errors.New("want milliseconds >= 0 or a duration such as 250ms")

// parseObjective reads an objective in milliseconds ("250") or as a Go
// duration ("250ms", "10s").
func parseObjective(v string) (float64, error) {
	ms, err := strconv.ParseFloat(v, 64)
	if err != nil {
		d, derr := time.ParseDuration(v)
		if derr != nil {
			return 0, errObjective
		}
		ms = float64(d) / float64(time.Millisecond)
	}
	if !(ms >= 0) || math.IsInf(ms, 0) {
		return 0, errObjective
	}
	return ms, nil
}

// sloHeaders are the request headers carrying the class's objectives;
// nil without any. Each request gets its own map.
func (c Class) sloHeaders() map[string]string {
	if c.TTFTSLOMs <= 0 && c.TPOTSLOMs <= 0 {
		return nil
	}
	h := map[string]string{}
	if c.TTFTSLOMs > 0 {
		h["x-slo-ttft-ms"] = strconv.FormatFloat(c.TTFTSLOMs, 'f', -1, 64)
	}
	if c.TPOTSLOMs > 0 {
		h["x-slo-tpot-ms"] = strconv.FormatFloat(c.TPOTSLOMs, 'f', -1, 64)
	}
	return h
}

func validateClasses(cs []Class) error {
	var errs []error
	if len(cs) > maxClasses {
		errs = append(errs, fmt.Errorf("classes: at most %d, got %d", maxClasses, len(cs)))
	}
	seen := map[string]bool{}
	for _, c := range cs {
		if c.Name == "" || seen[c.Name] {
			errs = append(errs, fmt.Errorf("class %q: names must be non-empty and distinct", c.Name))
		}
		seen[c.Name] = true
		if !(c.Share > 0) {
			errs = append(errs, fmt.Errorf("class %q: share must be > 0, got %v", c.Name, c.Share))
		}
	}
	return errors.Join(errs...)
}

func normalised(cs []Class) []Class {
	var sum float64
	for _, c := range cs {
		sum += c.Share
	}
	out := make([]Class, len(cs))
	for i, c := range cs {
		c.Share /= sum
		out[i] = c
	}
	return out
}

// pick draws a class index by share.
func pickClass(cs []Class, rng *rand.Rand) uint8 {
	x := rng.Float64()
	for i, c := range cs {
		if x < c.Share {
			return uint8(i)
		}
		x -= c.Share
	}
	return uint8(len(cs) - 1)
}

// ClassResult is one class's part of a stage: how many of its requests
// arrived in the window and how they ended (Failed includes Evicted), and
// its latencies (completed requests, milliseconds).
type ClassResult struct {
	Name       string  `json:"name"`
	Priority   int     `json:"priority"`
	Requests   int     `json:"requests"`
	Completed  int     `json:"completed"`
	TimedOut   int     `json:"timedOut"`
	Failed     int     `json:"failed"`
	Evicted    int     `json:"evicted,omitempty"`
	SuccessPct float64 `json:"successPct"`
	EvictedPct float64 `json:"evictedPct,omitempty"`
	// Retries and EvictedAttempts are as StageResult's.
	Retries         int `json:"retries,omitempty"`
	EvictedAttempts int `json:"evictedAttempts,omitempty"`
	// WindowEvicted counts the class's attempts evicted inside the
	// window, whenever their requests arrived: unlike Evicted, it sees
	// evictions of requests that arrived during the warm-up.
	WindowEvicted int `json:"windowEvicted,omitempty"`
	// TTFTSLOMetPct is the share of the class's requests that completed
	// with a TTFT within the class's objective (0 without one).
	TTFTSLOMetPct float64     `json:"ttftSLOMetPct,omitempty"`
	TTFT          Percentiles `json:"ttftMs"`
	E2E           Percentiles `json:"e2eMs"`
}

// classResults splits the measured flights by class.
func (s *sim) classResults() []ClassResult {
	cs := s.spec.Classes
	if len(cs) == 0 {
		return nil
	}
	out := make([]ClassResult, len(cs))
	ttft, e2e := make([][]float64, len(cs)), make([][]float64, len(cs))
	met := make([]int, len(cs))
	for i, c := range cs {
		out[i].Name, out[i].Priority = c.Name, c.Priority
		out[i].WindowEvicted = s.windowEvicted[i]
	}
	for i := range s.flights {
		f := &s.flights[i]
		if !f.measured {
			continue
		}
		r := &out[f.class]
		if !countAttempt(f, &r.Retries, &r.EvictedAttempts) {
			continue
		}
		r.Requests++
		switch f.status {
		case flightDone:
			r.Completed++
			ttft[f.class] = append(ttft[f.class], ms(f.ttft))
			if obj := cs[f.class].TTFTSLOMs; obj > 0 && ms(f.ttft) <= obj {
				met[f.class]++
			}
			e2e[f.class] = append(e2e[f.class], ms(f.end-f.arrival))
		case flightTimedOut:
			r.TimedOut++
		case flightEvicted:
			r.Failed++
			r.Evicted++
		default:
			r.Failed++
		}
	}
	for i := range out {
		if out[i].Requests > 0 {
			out[i].SuccessPct = 100 * float64(out[i].Completed) / float64(out[i].Requests)
			out[i].EvictedPct = 100 * float64(out[i].Evicted) / float64(out[i].Requests)
			out[i].TTFTSLOMetPct = 100 * float64(met[i]) / float64(out[i].Requests)
		}
		out[i].TTFT, out[i].E2E = percentiles(ttft[i]), percentiles(e2e[i])
	}
	return out
}
