package metrics

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/endpoint"
)

// The fleet measurements put the model servers in a child process (this test
// binary re-executed), so getrusage on this process counts the scraper alone.
const fleetEnv = "OPENEPP_METRICS_FLEET_SERVERS"

// TestHelperFleetServers is not a test: it is the child process's body. It
// serves the vLLM page on N loopback ports, prints "ADDR host:port" lines
// and "READY", and exits when its stdin closes.
func TestHelperFleetServers(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv(fleetEnv))
	if n == 0 {
		t.Skip("helper process for the fleet CPU measurements")
	}
	page := readPage(t, "vllm.txt")
	// Like vLLM's exporter, send a Content-Length (not chunked encoding).
	size := strconv.Itoa(len(page))
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", size)
		_, _ = w.Write(page)
	})
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = http.Serve(l, h) }()
		fmt.Printf("ADDR %s\n", l.Addr())
	}
	fmt.Println("READY")
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// startFleet starts n model servers in a child process and returns their
// addresses; the child exits when the test ends.
func startFleet(tb testing.TB, n int) []string {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperFleetServers$", "-test.count=1")
	cmd.Env = append(os.Environ(), fleetEnv+"="+strconv.Itoa(n), "GOMAXPROCS=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cancel() // kills the child
			<-done
		}
		cancel()
	})
	var addrs []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "READY" {
		if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
			addrs = append(addrs, a)
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	if len(addrs) != n {
		tb.Fatalf("fleet helper started %d of %d servers", len(addrs), n)
	}
	return addrs
}

// fleetResult is what one fleet run used.
type fleetResult struct {
	cores         float64 // CPU seconds per wall second
	scrapes       float64
	cpuPerScrape  time.Duration
	wall          time.Duration
	failedScrapes float64
}

// runFleet scrapes the servers at interval for d (after all are fresh) and
// measures this process's CPU use.
func runFleet(tb testing.TB, addrs []string, opts Options, d time.Duration) fleetResult {
	tb.Helper()
	specs := make([]endpoint.Spec, len(addrs))
	for i, a := range addrs {
		specs[i] = specFor(tb, fmt.Sprintf("ep-%03d", i), a, nil)
	}
	st := newStoreWith(specs...)
	opts.Log = logr.Discard()
	s, err := New(st, opts)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	defer func() { cancel(); <-done }()
	for _, ep := range st.Snapshot() {
		eventually(tb, 10*time.Second, "fleet endpoint fresh", func() bool { return !ep.Metrics().UpdateTime.IsZero() })
	}
	failed := func() float64 {
		sum := 0.0
		for _, c := range s.tel.errors {
			sum += metricValue(tb, c)
		}
		return sum
	}
	n0, f0, cpu0, wall0 := metricValue(tb, s.tel.scrapes), failed(), processCPU(tb), time.Now()
	time.Sleep(d)
	n1, f1, cpu1, wall := metricValue(tb, s.tel.scrapes), failed(), processCPU(tb), time.Since(wall0)
	r := fleetResult{cores: float64(cpu1-cpu0) / float64(wall), scrapes: n1 - n0, wall: wall, failedScrapes: f1 - f0}
	if r.scrapes > 0 {
		r.cpuPerScrape = time.Duration(float64(cpu1-cpu0) / r.scrapes)
	}
	return r
}

// TestFleetCPUBudget scrapes 100 endpoints every 50 ms for 3 s and checks the
// scraper stays far below one core (upstream: ~7.5 cores). The bound is
// generous for a loaded 2-core machine; BenchmarkFleet reports the figure.
func TestFleetCPUBudget(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("CPU budget is measured without -short and without -race")
	}
	const n, interval, d = 100, 50 * time.Millisecond, 3 * time.Second
	r := runFleet(t, startFleet(t, n), Options{Interval: interval}, d)
	t.Logf("%d endpoints @ %v: %.3f cores, %.0f scrapes (%.0f failed), %v CPU per scrape",
		n, interval, r.cores, r.scrapes, r.failedScrapes, r.cpuPerScrape)
	if want := 0.5 * float64(n) * d.Seconds() / interval.Seconds(); r.scrapes < want {
		t.Errorf("only %.0f scrapes in %v; want at least %.0f (half the nominal rate)", r.scrapes, r.wall, want)
	}
	if r.failedScrapes > 0 {
		t.Errorf("%.0f scrapes failed", r.failedScrapes)
	}
	if r.cores > 0.5 {
		t.Errorf("scraper used %.3f cores; want < 0.5", r.cores)
	}
}

// BenchmarkFleet reports the scraper's CPU use for N endpoints at 50 ms
// (performance.md B3), with scrapes spread over the interval (the default)
// and aligned to one instant. One op is one 50 ms interval.
func BenchmarkFleet(b *testing.B) {
	for _, slots := range []int{-1, 0, 1} {
		for _, n := range []int{10, 100} {
			b.Run(fmt.Sprintf("slots=%d/endpoints=%d", slots, n), func(b *testing.B) {
				addrs := startFleet(b, n)
				b.ResetTimer()
				opts := Options{Interval: 50 * time.Millisecond, AlignedSlots: slots}
				r := runFleet(b, addrs, opts, time.Duration(b.N)*50*time.Millisecond)
				b.StopTimer()
				b.ReportMetric(r.cores, "cores")
				b.ReportMetric(float64(r.cpuPerScrape.Nanoseconds()), "cpu-ns/scrape")
				b.ReportMetric(r.failedScrapes, "failed-scrapes")
			})
		}
	}
}
