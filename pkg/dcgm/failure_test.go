package dcgm

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/fetchfail"
)

const onePage = "# TYPE DCGM_FI_DEV_GPU_UTIL gauge\nDCGM_FI_DEV_GPU_UTIL{gpu=\"0\"} 50\n"

// refusedPort is a port on 127.0.0.1 nobody listens on.
func refusedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	_ = ln.Close()
	n, _ := strconv.Atoi(p)
	return n
}

// TestFailedPollsKeepThenDropTheValue checks every kind of bad answer:
// counted by reason, the previous value kept for two polls and dropped at
// the third, never blocking longer than the timeout.
func TestFailedPollsKeepThenDropTheValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		h      http.HandlerFunc // nil: connection refused
		reason string
	}{
		{name: "server error", reason: fetchfail.Status, h: func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "DCGM not ready", http.StatusInternalServerError)
		}},
		{name: "garbage", reason: fetchfail.Parse,
			h: writePage("<html><body>upstream connect error</body></html>\nDCGM_FI_DEV_GPU_UTIL{ 3 oops\n")},
		{name: "too large", reason: fetchfail.TooLarge, h: func(w http.ResponseWriter, _ *http.Request) {
			line := "# " + strings.Repeat("x", 1<<10) + "\n"
			for range MaxPageBytes/len(line) + 2 {
				if _, err := io.WriteString(w, line); err != nil {
					return // the source stopped reading
				}
			}
		}},
		{name: "hangs", reason: fetchfail.Timeout, h: func(_ http.ResponseWriter, r *http.Request) {
			<-r.Context().Done() // the poll's timeout closes the connection
		}},
		{name: "hangs mid-page", reason: fetchfail.Timeout, h: func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "# TYPE DCGM_FI_DEV_GPU_UTIL gauge\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}},
		{name: "connection refused", reason: fetchfail.Refused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			port := 0
			if tc.h == nil {
				port = refusedPort(t)
			} else {
				port = serve(t, tc.h).port(t)
			}
			ep := endpoint.New(endpoint.Spec{Name: "e", Address: "127.0.0.1", Port: 8000})
			ep.SetAttributes(endpoint.Attributes{UtilizationKey: 0.3})
			timeout := "3s" // a large page takes its time under -race
			if tc.reason == fetchfail.Timeout {
				timeout = "100ms"
			}
			s := newSource(t, `{"interval": "5s", "timeout": "`+timeout+`", "port": `+strconv.Itoa(port)+`}`, ep)
			r := newRounds(s)
			for i := 1; i <= dropAfter; i++ {
				start := time.Now()
				r.run()
				if took := time.Since(start); took > 4*time.Second {
					t.Fatalf("poll %d took %s with a %s timeout", i, took, timeout)
				}
				if got := testutil.ToFloat64(s.tel.errors[tc.reason]); got != float64(i) {
					t.Fatalf("after %d polls: poll_errors_total{reason=%q} = %v", i, tc.reason, got)
				}
				if _, kept := utilOf(ep); i < dropAfter != kept {
					t.Fatalf("after %d failed polls: value kept = %v", i, kept)
				}
			}
		})
	}
}

// TestPollFailuresAreLoggedOnce: a run of failures logs when it starts,
// when the values are dropped and when it ends, not on every poll; a
// flapping exporter logs its failures at most once a minute.
func TestPollFailuresAreLoggedOnce(t *testing.T) {
	t.Parallel()
	var status atomic.Int64
	status.Store(http.StatusOK)
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if code := int(status.Load()); code != http.StatusOK {
			w.WriteHeader(code)
			return
		}
		writePage(onePage)(w, r)
	})
	ep := endpoint.New(endpoint.Spec{Name: "e", Address: "127.0.0.1"})
	s := newSource(t, `{"port": `+strconv.Itoa(srv.port(t))+`}`, ep)
	var lines []string
	s.log = funcr.New(func(_, args string) { lines = append(lines, args) }, funcr.Options{Verbosity: 1})
	r := newRounds(s)
	r.run()
	status.Store(http.StatusServiceUnavailable)
	for range 5 {
		r.run()
	}
	status.Store(http.StatusOK)
	r.run()
	for range 3 { // flapping within the minute: silent
		status.Store(http.StatusBadGateway)
		r.run()
		status.Store(http.StatusOK)
		r.run()
	}
	var msgs []string
	for _, l := range lines {
		_, msg, _ := strings.Cut(l, `"msg"="`)
		msg, _, _ = strings.Cut(msg, `"`)
		msgs = append(msgs, msg)
	}
	want := []string{"cannot read DCGM exporter", "GPU utilization dropped", "DCGM exporter readable again"}
	if diff := cmp.Diff(want, msgs); diff != "" {
		t.Errorf("log (-want +got):\n%s\n%s", diff, strings.Join(lines, "\n"))
	}
	if _, ok := utilOf(ep); !ok {
		t.Error("no value after the exporter recovered")
	}
}

// TestStartPollsUntilCancelled runs the source as the EPP does: it polls
// at once and every interval, a hanging exporter delays nobody else, and
// a stopped source leaves no values behind.
func TestStartPollsUntilCancelled(t *testing.T) {
	t.Parallel()
	polls := make(chan struct{}, 100)
	fine := serve(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case polls <- struct{}{}:
		default:
		}
		writePage(onePage)(w, r)
	})
	hung := serve(t, func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	ok := endpoint.New(endpoint.Spec{Name: "ok", Address: "127.0.0.1"})
	s := newSource(t, `{"interval": "20ms", "timeout": "5s", "port": `+strconv.Itoa(fine.port(t))+`}`, ok)
	slow := newSource(t, `{"interval": "20ms", "timeout": "5s", "port": `+strconv.Itoa(hung.port(t))+`}`,
		endpoint.New(endpoint.Spec{Name: "slow", Address: "127.0.0.1"}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- s.Start(ctx) }()
	go func() { done <- slow.Start(ctx) }()
	for range 3 { // the first at once, then every interval
		select {
		case <-polls:
		case <-time.After(5 * time.Second):
			t.Fatal("no poll")
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, has := utilOf(ok); has {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing published within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	for range 2 {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Start: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Start did not return after cancel")
		}
	}
	if v, has := utilOf(ok); has {
		t.Errorf("a stopped source left utilization %v behind", v)
	}
}

// TestIdleSourceDoesNothing: without extractors there is nothing to
// collect for: no polls.
func TestIdleSourceDoesNothing(t *testing.T) {
	t.Parallel()
	srv := serve(t, writePage(onePage))
	ep := endpoint.New(endpoint.Spec{Name: "e", Address: "127.0.0.1"})
	s := newSource(t, `{"interval": "10ms", "port": `+strconv.Itoa(srv.port(t))+`}`, ep)
	s.extractors = nil
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Start(ctx); err != nil || srv.hits.Load() != 0 {
		t.Errorf("idle source: %v, %d polls", err, srv.hits.Load())
	}
}
