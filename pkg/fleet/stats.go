package fleet

import (
	"math"
	"slices"
	"time"
)

// StageResult is what one run measured over the requests that arrived in
// its measured window (after the warm-up). Definitions follow
// inference-perf (performance.md §3.1) where it has one.
type StageResult struct {
	// QPS is the offered Poisson rate; DurationS the measured window.
	QPS       float64 `json:"qps"`
	DurationS float64 `json:"durationS"`
	// Requests arrived in the window; Completed of them got every token;
	// TimedOut were cancelled by the client; Failed could not be routed,
	// were refused by flow control or the server, or were evicted in
	// flight (Evicted of them: a 429 the client did not retry). A request
	// its client retried (RunSpec.Retry) counts once, by its last attempt.
	Requests  int `json:"requests"`
	Completed int `json:"completed"`
	TimedOut  int `json:"timedOut"`
	Failed    int `json:"failed"`
	Evicted   int `json:"evicted,omitempty"`
	// Retries counts the attempts those requests' clients sent after an
	// eviction; EvictedAttempts their attempts evicted, retried or not.
	Retries         int `json:"retries,omitempty"`
	EvictedAttempts int `json:"evictedAttempts,omitempty"`
	// SuccessPct is Completed / Requests.
	SuccessPct float64 `json:"successPct"`
	// OutputTokensPerS and RequestsPerS divide the completed requests'
	// output tokens (and count) by the time from the window's start to the
	// last of them finishing, the drain included, as inference-perf (and
	// vLLM's and SGLang's bench_serving) compute a run's throughput; past
	// saturation they measure capacity, with the slowest server's backlog
	// counted. Below saturation, outputs long against the window bias them
	// low; see WindowOutputTokensPerS.
	OutputTokensPerS float64 `json:"outputTokensPerS"`
	RequestsPerS     float64 `json:"requestsPerS"`
	// WindowOutputTokensPerS counts the output tokens generated inside the
	// window (by any request) per second: the served rate, without the
	// drain; about the offered token rate below saturation.
	WindowOutputTokensPerS float64 `json:"windowOutputTokensPerS"`
	// WindowCompletionsPerS counts requests of any phase that finished
	// inside the window, per second: about QPS below saturation, less
	// past it. It is what "saturated" is judged by.
	WindowCompletionsPerS float64 `json:"windowCompletionsPerS"`
	// TTFT, E2E and TPOT are over completed requests, in milliseconds.
	// TPOT = (e2e − TTFT)/(output tokens − 1), a request's mean ITL.
	TTFT Percentiles `json:"ttftMs"`
	E2E  Percentiles `json:"e2eMs"`
	TPOT Percentiles `json:"tpotMs"`
	// CacheHitPct is 100 × Σ cached prompt tokens / Σ prompt tokens
	// (inference-perf's kv_cache_hit_percent), over completed requests.
	// A request prefilled remotely counts its prefill server's hit, the
	// compute it saved: its decode server reports every prompt token but
	// the last as cached, as vLLM counts pulled tokens.
	CacheHitPct float64 `json:"cacheHitPct"`
	// LoadCV is the coefficient of variation (σ/μ) across servers of the
	// tokens each computed for completed requests (uncached prompt plus
	// output): 0 is a perfect spread.
	LoadCV float64 `json:"loadCV"`
	// GoodputRPS counts completed requests meeting the SLO (TTFT and TPOT),
	// per second as RequestsPerS; GoodputPct is their share of Requests.
	GoodputRPS float64 `json:"goodputReqPerS"`
	GoodputPct float64 `json:"goodputPct"`
	// Encoder is what the servers' encoder caches did in the window, for
	// multimodal traffic.
	Encoder *EncoderResult `json:"encoder,omitempty"`
	// P2P is what P2P KV pulls did, when the EPP named sources.
	P2P *P2PResult `json:"p2p,omitempty"`
	// FirstError is the first routing or submission error, if any.
	FirstError string `json:"firstError,omitempty"`
	// Classes splits the stage by traffic class (RunSpec.Classes).
	Classes []ClassResult `json:"classes,omitempty"`
	// Disagg is what P/D disaggregation did, when there were prefill
	// servers or the EPP named a prefill endpoint.
	Disagg *DisaggResult `json:"disagg,omitempty"`
	// WallSeconds is how long the run took on this machine.
	WallSeconds float64 `json:"wallSeconds"`
}

// Percentiles summarises a distribution, in milliseconds.
type Percentiles struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
}

// result computes the stage's measurements.
func (s *sim) result() *StageResult {
	slo := s.spec.Workload.SLO
	r := &StageResult{QPS: s.spec.QPS, DurationS: s.spec.Workload.Duration.Seconds()}
	var ttft, e2e, tpot []float64
	var outTokens, promptTokens, cachedTokens, good int64
	last := s.start
	for i := range s.flights {
		f := &s.flights[i]
		if !f.measured || !countAttempt(f, &r.Retries, &r.EvictedAttempts) {
			continue
		}
		r.Requests++
		switch f.status {
		case flightTimedOut:
			r.TimedOut++
			continue
		case flightFailed, flightRunning, flightQueued, flightPrefilling:
			r.Failed++
			continue
		case flightEvicted:
			r.Failed++
			r.Evicted++
			continue
		}
		r.Completed++
		last = max(last, f.end)
		outTokens += int64(f.outN)
		promptTokens += int64(f.promptN)
		if f.remote() {
			cachedTokens += int64(f.prefillCached)
		} else {
			cachedTokens += int64(f.cached)
		}
		total := f.end - f.arrival
		perTok := time.Duration(0)
		if f.outN > 1 {
			perTok = (total - f.ttft) / time.Duration(f.outN-1)
		}
		ttft, e2e, tpot = append(ttft, ms(f.ttft)), append(e2e, ms(total)), append(tpot, ms(perTok))
		if f.ttft <= slo.TTFT && perTok <= slo.ITL {
			good++
		}
	}
	span := (last - s.start).Seconds()
	if span > 0 {
		r.OutputTokensPerS = float64(outTokens) / span
		r.RequestsPerS = float64(r.Completed) / span
		r.GoodputRPS = float64(good) / span
	}
	window := s.spec.Workload.Duration.Seconds()
	r.WindowCompletionsPerS = round3(float64(s.windowDone) / window)
	r.WindowOutputTokensPerS = round3(float64(s.windowTokens) / window)
	if r.Requests > 0 {
		r.SuccessPct = 100 * float64(r.Completed) / float64(r.Requests)
		r.GoodputPct = 100 * float64(good) / float64(r.Requests)
	}
	if promptTokens > 0 {
		r.CacheHitPct = 100 * float64(cachedTokens) / float64(promptTokens)
	}
	r.TTFT, r.E2E, r.TPOT = percentiles(ttft), percentiles(e2e), percentiles(tpot)
	r.LoadCV = s.loadCV()
	r.Classes = s.classResults()
	r.Disagg = s.disaggResult(r.Requests)
	r.Encoder = s.encoderResult()
	r.P2P = s.p2pResult(r.Requests)
	if s.failures.first != nil {
		r.FirstError = s.failures.first.Error()
	}
	return r
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentiles uses the nearest-rank method; it sorts v.
func percentiles(v []float64) Percentiles {
	if len(v) == 0 {
		return Percentiles{}
	}
	slices.Sort(v)
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	rank := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(v)))) - 1
		return v[min(max(i, 0), len(v)-1)]
	}
	return Percentiles{Mean: round3(sum / float64(len(v))), P50: round3(rank(0.5)), P90: round3(rank(0.9)), P99: round3(rank(0.99))}
}

// loadCV is σ/μ of the servers' computed tokens.
func (s *sim) loadCV() float64 {
	n := float64(len(s.servers))
	mean := 0.0
	for i := range s.servers {
		mean += float64(s.servers[i].work)
	}
	mean /= n
	if mean == 0 {
		return 0
	}
	variance := 0.0
	for i := range s.servers {
		d := float64(s.servers[i].work) - mean
		variance += d * d
	}
	return round3(math.Sqrt(variance/n) / mean)
}

// round3 keeps three decimals, so JSON output stays readable and stable.
func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
