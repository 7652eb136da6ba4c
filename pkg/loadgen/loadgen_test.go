package loadgen

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRunRejectsBadOptions(t *testing.T) {
	t.Parallel()
	ok := func(context.Context, int) (time.Time, error) { return time.Now(), nil }
	tests := []struct {
		name string
		o    Options
		fn   Func
		want string
	}{
		{name: "negative rate", o: Options{Rate: -1, Concurrency: 1, Duration: time.Second}, fn: ok, want: "rate must be"},
		{name: "zero concurrency", o: Options{Concurrency: 0, Duration: time.Second}, fn: ok, want: "concurrency must be >= 1"},
		{name: "no duration", o: Options{Concurrency: 1}, fn: ok, want: "duration must be > 0"},
		{name: "negative cap", o: Options{Concurrency: 1, Duration: time.Second, MaxRequests: -1}, fn: ok, want: "max requests"},
		{name: "negative timeout", o: Options{Concurrency: 1, Duration: time.Second, Timeout: -1}, fn: ok, want: "timeout must be"},
		{name: "nil function", o: Options{Concurrency: 1, Duration: time.Second}, want: "nil request function"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Run(context.Background(), tc.o, tc.fn)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run() error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestClosedLoopRespectsConcurrency checks the in-flight cap and that
// every started request is accounted for.
func TestClosedLoopRespectsConcurrency(t *testing.T) {
	t.Parallel()
	var inFlight, peak atomic.Int64
	fn := func(ctx context.Context, _ int) (time.Time, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(time.Millisecond)
		return time.Now(), nil
	}
	res, err := Run(context.Background(), Options{Concurrency: 4, Duration: 100 * time.Millisecond}, fn)
	if err != nil {
		t.Fatal(err)
	}
	if peak.Load() > 4 {
		t.Errorf("peak in flight = %d, want <= 4", peak.Load())
	}
	if res.Completed == 0 || res.Completed != res.Sent || res.Failed != 0 {
		t.Errorf("sent %d, completed %d, failed %d; want all completed", res.Sent, res.Completed, res.Failed)
	}
	if res.Latency.P50 < 1000 {
		t.Errorf("p50 = %.0fµs, want >= 1ms (the request sleeps 1ms)", res.Latency.P50)
	}
	if res.Lag.N != 0 {
		t.Errorf("closed loop measured %d lags, want none (nothing is scheduled)", res.Lag.N)
	}
}

// TestOpenLoopCountsQueueing checks there is no coordinated omission: a
// server slower than the arrivals shows latency far above its service time,
// and a throughput below the offered rate.
func TestOpenLoopCountsQueueing(t *testing.T) {
	t.Parallel()
	const service = 2 * time.Millisecond
	fn := func(context.Context, int) (time.Time, error) {
		time.Sleep(service)
		return time.Now(), nil
	}
	o := Options{Rate: 2000, Concurrency: 1, Duration: 100 * time.Millisecond, Seed: 1}
	res, err := Run(context.Background(), o, fn)
	if err != nil {
		t.Fatal(err)
	}
	if res.Latency.Max < 10*res.Service.P50 {
		t.Errorf("max latency %.0fµs vs service p50 %.0fµs: queueing for a slot was not counted", res.Latency.Max, res.Service.P50)
	}
	if res.Throughput > 0.5*o.Rate {
		t.Errorf("throughput %.0f/s with a 2ms server at concurrency 1, want < %.0f", res.Throughput, 0.5*o.Rate)
	}
	// Queued arrivals are sent as soon as the slot frees: the generator's
	// own lag is not the queueing, and stays far below it.
	if res.Lag.N != res.Sent || res.Lag.P50 > float64(service/time.Microsecond)/2 {
		t.Errorf("lag n=%d p50=%.0fµs for %d sent, want one per request and well under the %s queueing",
			res.Lag.N, res.Lag.P50, res.Sent, service)
	}
}

// TestOpenLoopArrivals checks the arrival count follows the rate, and
// that the schedule is a function of the seed.
func TestOpenLoopArrivals(t *testing.T) {
	t.Parallel()
	o := Options{Rate: 5000, Concurrency: 8, Duration: 200 * time.Millisecond, Seed: 42}
	a, b := newSchedule(o, time.Now()), newSchedule(o, time.Now())
	if diff := cmp.Diff(a.at, b.at); diff != "" {
		t.Errorf("same seed, different arrivals (-a +b):\n%s", diff)
	}
	if n := len(a.at); n < 850 || n > 1150 {
		t.Errorf("%d arrivals in 200ms at 5000/s, want about 1000", n)
	}
	for i := 1; i < len(a.at); i++ {
		if a.at[i] < a.at[i-1] || a.at[i] > o.Duration {
			t.Fatalf("arrival %d at %s after %s: out of order or past the duration", i, a.at[i], a.at[i-1])
		}
	}
	res, err := Run(context.Background(), o, func(context.Context, int) (time.Time, error) { return time.Now(), nil })
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != len(a.at) {
		t.Errorf("sent %d, want every arrival (%d)", res.Sent, len(a.at))
	}
}

func TestMaxRequestsAndFailures(t *testing.T) {
	t.Parallel()
	fn := func(_ context.Context, seq int) (time.Time, error) {
		if seq%2 == 1 {
			return time.Time{}, errors.New("odd request failed")
		}
		return time.Now(), nil
	}
	tests := []struct {
		name string
		o    Options
	}{
		{name: "closed", o: Options{Concurrency: 3, Duration: time.Second, MaxRequests: 10}},
		{name: "open", o: Options{Rate: 100000, Concurrency: 3, Duration: time.Second, MaxRequests: 10}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, err := Run(context.Background(), tc.o, fn)
			if err != nil {
				t.Fatal(err)
			}
			got := []int{res.Sent, res.Completed, res.Failed}
			if diff := cmp.Diff([]int{10, 5, 5}, got); diff != "" {
				t.Errorf("sent, completed, failed (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"odd request failed"}, res.Errors); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTimeoutAndCancel(t *testing.T) {
	t.Parallel()
	hang := func(ctx context.Context, _ int) (time.Time, error) {
		<-ctx.Done()
		return time.Time{}, ctx.Err()
	}
	// MaxRequests, not Duration, ends the run: a 1 ms duration could pass
	// before a worker starts on a loaded machine, leaving nothing to time out.
	res, err := Run(context.Background(), Options{Concurrency: 2, Duration: 10 * time.Second, MaxRequests: 2, Timeout: 20 * time.Millisecond}, hang)
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed != 2 || !strings.Contains(strings.Join(res.Errors, ","), "deadline exceeded") {
		t.Errorf("failed %d with %v, want 2 timeouts", res.Failed, res.Errors)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := Run(ctx, Options{Rate: 1, Concurrency: 1, Duration: time.Hour}, hang); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run() after the context ended: error %v, want context.DeadlineExceeded", err)
	}
}

func TestSummarise(t *testing.T) {
	t.Parallel()
	ms := func(vs ...int) []time.Duration {
		out := make([]time.Duration, len(vs))
		for i, v := range vs {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i
	}
	tests := []struct {
		name string
		in   []time.Duration
		want Percentiles
	}{
		{name: "empty", want: Percentiles{}},
		{name: "one", in: ms(3), want: Percentiles{N: 1, Mean: 3000, P50: 3000, P90: 3000, P99: 3000, P999: 3000, Max: 3000}},
		{name: "hundred unsorted", in: ms(hundred...), want: Percentiles{N: 100, Mean: 50500, P50: 50000, P90: 90000, P99: 99000, P999: 100000, Max: 100000}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tc.want, Summarise(tc.in)); diff != "" {
				t.Errorf("Summarise (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWaiterNeverEarly checks the slot's waiter: it never returns before
// the instant asked for, returns promptly after it, and honours ctx.
func TestWaiterNeverEarly(t *testing.T) {
	t.Parallel()
	w := newWaiter()
	defer w.close()
	for _, d := range []time.Duration{-time.Millisecond, 0, 50 * time.Microsecond, 700 * time.Microsecond, 3 * time.Millisecond} {
		at := time.Now().Add(d)
		if !w.wait(context.Background(), at) {
			t.Fatalf("wait(%s) = false without cancellation", d)
		}
		if late := time.Since(at); late < 0 || late > time.Second {
			t.Errorf("wait(%s) returned %s after the instant, want >= 0 and well under a second", d, late)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	start := time.Now()
	if w.wait(ctx, start.Add(time.Hour)) {
		t.Error("wait returned true although the context ended first")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("cancelled wait took %s", took)
	}
	if !(timerWaiter{}).wait(context.Background(), time.Now().Add(time.Millisecond)) {
		t.Error("timer waiter returned false without cancellation")
	}
}
