// Package loadgen drives a request function under open-loop Poisson load
// with a cap on requests in flight, and measures latency from each
// request's intended send time, so a slow system cannot hide its slowness
// by slowing the generator down (no coordinated omission).
//
// # Model
//
// Open loop (Options.Rate > 0): arrival k is scheduled at start + the sum
// of k+1 exponential gaps of mean 1/Rate, drawn from a seeded source, and
// no arrival is scheduled after Options.Duration. Options.Concurrency slots
// take arrivals in order, FIFO: a free slot takes the next arrival, waits
// for its scheduled time if it is still in the future, and sends it. When
// every slot is busy, arrivals queue, and the queueing counts in their
// latency. A system slower than the offered rate therefore shows a latency
// that grows with the run and a throughput below the offered rate.
//
// Closed loop (Options.Rate == 0): every slot sends its next request as
// soon as its previous one ends, until Options.Duration has passed; the
// intended send time is the actual one. This measures the most the system
// completes at that concurrency.
//
// The request function returns the instant that stops the latency clock
// (for an ext_proc exchange: the routing decision), and returns only when
// the whole request is done, which frees its slot.
//
// # Timing
//
// A Go timer can fire up to a millisecond late when the process is
// otherwise idle (the runtime's netpoller sleeps in whole milliseconds),
// which would add the generator's own lag to every latency. On Linux a slot
// therefore sleeps on a timerfd read through the netpoller, which wakes it
// within tens of microseconds without spinning; elsewhere it uses a Go
// timer. Latency from the intended time includes whatever lag remains;
// Result.Lag reports it: for each open-loop request, how late its slot sent
// it after the later of its intended time and the moment the slot took it.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultTimeout bounds one request when Options.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// maxErrors is how many distinct error messages a Result keeps.
const maxErrors = 5

// Options configure one run.
type Options struct {
	// Rate is the mean arrival rate in requests per second (Poisson);
	// zero means closed loop.
	Rate float64
	// Concurrency is the most requests in flight, at least 1.
	Concurrency int
	// Duration is how long arrivals are scheduled (open loop) or new
	// requests are started (closed loop); must be > 0.
	Duration time.Duration
	// MaxRequests, when > 0, caps the number of requests of the run.
	MaxRequests int
	// Timeout bounds one request (default DefaultTimeout).
	Timeout time.Duration
	// Seed seeds the arrival times.
	Seed uint64
}

func (o Options) validate() error {
	var errs []error
	if o.Rate < 0 || math.IsNaN(o.Rate) || math.IsInf(o.Rate, 0) {
		errs = append(errs, fmt.Errorf("rate must be a finite number >= 0, got %v", o.Rate))
	}
	if o.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("concurrency must be >= 1, got %d", o.Concurrency))
	}
	if o.Duration <= 0 {
		errs = append(errs, fmt.Errorf("duration must be > 0, got %s", o.Duration))
	}
	if o.MaxRequests < 0 {
		errs = append(errs, fmt.Errorf("max requests must be >= 0, got %d", o.MaxRequests))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout must be >= 0, got %s", o.Timeout))
	}
	return errors.Join(errs...)
}

// Func performs request seq (0, 1, ...). It returns the instant that stops
// the latency clock and returns itself only when the request is finished.
// It is called from Concurrency goroutines at once.
type Func func(ctx context.Context, seq int) (mark time.Time, err error)

// Result summarises one run. Latencies are in microseconds.
type Result struct {
	// Offered is Options.Rate (0 for closed loop).
	Offered     float64 `json:"offered_rps"`
	Concurrency int     `json:"concurrency"`
	// Sent requests were started; Completed ones succeeded; Failed ones
	// returned an error (or timed out).
	Sent      int `json:"sent"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
	// Errors are up to five distinct error messages.
	Errors []string `json:"errors,omitempty"`
	// ElapsedSeconds runs from the start to the end of the last request.
	ElapsedSeconds float64 `json:"elapsed_s"`
	// Throughput is Completed / ElapsedSeconds.
	Throughput float64 `json:"throughput_rps"`
	// Latency runs from the intended send time to the mark; Service from
	// the actual send time to the mark (it leaves out queueing for a slot).
	Latency Percentiles `json:"latency_us"`
	Service Percentiles `json:"service_us"`
	// Lag is the generator's own wake-up delay per request (open loop
	// only; zero for closed loop): the send time minus the later of the
	// intended time and the instant the slot took the arrival. It is part
	// of Latency, and measures the generator and its machine, not the
	// system under test.
	Lag Percentiles `json:"lag_us"`
	// WorstAtSeconds is when, from the start, the request with the highest
	// latency was meant to be sent: a tail that sits at the very start of
	// every run points at the harness, not the system under test.
	WorstAtSeconds float64 `json:"worst_at_s"`
}

// Run drives fn as o describes and returns the measurements. It returns an
// error only for invalid options or when ctx ends first; failed requests
// are counted in the Result.
func Run(ctx context.Context, o Options, fn Func) (Result, error) {
	if err := o.validate(); err != nil {
		return Result{}, fmt.Errorf("loadgen: %w", err)
	}
	if fn == nil {
		return Result{}, errors.New("loadgen: nil request function")
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	start := time.Now()
	r := &runner{timeout: o.Timeout, sched: newSchedule(o, start), fn: fn}
	recs := make([]recorder, o.Concurrency)
	var wg sync.WaitGroup
	for i := range recs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.slot(ctx, &recs[i])
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("loadgen: run interrupted: %w", err)
	}
	return summarise(o, start, recs), nil
}

// runner is what the slots of one run share.
type runner struct {
	timeout time.Duration
	sched   *schedule
	fn      Func
}

// slot is one of the Concurrency senders: it takes arrivals in order until
// the schedule ends, recording into its own recorder.
func (r *runner) slot(ctx context.Context, rec *recorder) {
	w := newWaiter()
	defer w.close()
	for ctx.Err() == nil {
		seq, intended, ok := r.sched.take()
		if !ok {
			return
		}
		taken := time.Now()
		if intended.After(taken) && !w.wait(ctx, intended) {
			return
		}
		begin := time.Now()
		if r.sched.closed {
			intended = begin
		} else {
			rec.lag = append(rec.lag, begin.Sub(later(intended, taken)))
		}
		rctx, cancel := context.WithTimeout(ctx, r.timeout)
		mark, err := r.fn(rctx, seq)
		cancel()
		rec.add(intended, begin, mark, time.Now(), err)
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// schedule hands out arrivals in order.
type schedule struct {
	closed   bool
	start    time.Time
	deadline time.Time
	max      int
	at       []time.Duration // open loop: arrival offsets from start
	next     atomic.Int64
}

func newSchedule(o Options, start time.Time) *schedule {
	s := &schedule{closed: o.Rate == 0, start: start, deadline: start.Add(o.Duration), max: o.MaxRequests}
	if s.closed {
		return s
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x6c6f616467656e)) //nolint:gosec // arrival jitter, not security
	var t time.Duration
	for o.MaxRequests == 0 || len(s.at) < o.MaxRequests {
		t += time.Duration(rng.ExpFloat64() / o.Rate * float64(time.Second))
		if t > o.Duration {
			break
		}
		s.at = append(s.at, t)
	}
	return s
}

// take returns the next arrival, or false when the run has no more.
func (s *schedule) take() (int, time.Time, bool) {
	seq := int(s.next.Add(1) - 1)
	if s.max > 0 && seq >= s.max {
		return 0, time.Time{}, false
	}
	if s.closed {
		now := time.Now()
		return seq, now, now.Before(s.deadline)
	}
	if seq >= len(s.at) {
		return 0, time.Time{}, false
	}
	return seq, s.start.Add(s.at[seq]), true
}

// recorder collects one slot's measurements, so slots never contend.
type recorder struct {
	latency, service []time.Duration
	lag              []time.Duration // open loop: every sent request
	sent, failed     int
	errs             []string
	last             time.Time
	worst            time.Duration
	worstAt          time.Time
}

func (r *recorder) add(intended, begin, mark, end time.Time, err error) {
	r.sent++
	if end.After(r.last) {
		r.last = end
	}
	if err != nil {
		r.failed++
		if len(r.errs) < maxErrors {
			r.errs = append(r.errs, err.Error())
		}
		return
	}
	lat := mark.Sub(intended)
	if lat > r.worst {
		r.worst, r.worstAt = lat, intended
	}
	r.latency = append(r.latency, lat)
	r.service = append(r.service, mark.Sub(begin))
}

func summarise(o Options, start time.Time, recs []recorder) Result {
	res := Result{Offered: o.Rate, Concurrency: o.Concurrency}
	var lat, svc, lag []time.Duration
	last := start
	var worst time.Duration
	for _, r := range recs {
		if r.worst > worst {
			worst = r.worst
			res.WorstAtSeconds = r.worstAt.Sub(start).Seconds()
		}
		res.Sent += r.sent
		res.Failed += r.failed
		lat = append(lat, r.latency...)
		svc = append(svc, r.service...)
		lag = append(lag, r.lag...)
		res.Errors = appendDistinct(res.Errors, r.errs)
		if r.last.After(last) {
			last = r.last
		}
	}
	res.Completed = len(lat)
	res.ElapsedSeconds = last.Sub(start).Seconds()
	if res.ElapsedSeconds > 0 {
		res.Throughput = float64(res.Completed) / res.ElapsedSeconds
	}
	res.Latency = Summarise(lat)
	res.Service = Summarise(svc)
	res.Lag = Summarise(lag)
	return res
}

func appendDistinct(dst, src []string) []string {
	for _, e := range src {
		if len(dst) >= maxErrors {
			return dst
		}
		dup := false
		for _, d := range dst {
			dup = dup || d == e
		}
		if !dup {
			dst = append(dst, e)
		}
	}
	return dst
}
