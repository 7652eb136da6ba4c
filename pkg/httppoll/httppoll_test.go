package httppoll

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openepp/openepp/pkg/certfile"
	"github.com/openepp/openepp/pkg/fetchfail"
	"github.com/openepp/openepp/test/leakcheck"
)

// TestMain fails the run if a poll's or Tick's goroutine outlives the
// tests.
func TestMain(m *testing.M) { leakcheck.Main(m, 3*time.Second, "openepp/pkg/") }

func TestGet(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		h          http.HandlerFunc // nil: a server already closed, so the connection is refused
		header     func(http.Header) error
		wantBody   string
		wantReason string
		wantErr    string
	}{
		{name: "ok", wantBody: "hello", h: func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "hello")
		}},
		{name: "headers", wantBody: "text/x", header: func(h http.Header) error { h.Set("Accept", "text/x"); return nil },
			h: func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.Header.Get("Accept")) }},
		{name: "header fails", wantReason: fetchfail.Connect, wantErr: "no key",
			header: func(http.Header) error { return errors.New("no key") }, h: func(http.ResponseWriter, *http.Request) {}},
		{name: "not 200", wantReason: fetchfail.Status, wantErr: "GET /page: status 404", h: http.NotFound},
		{name: "redirect not followed", wantReason: fetchfail.Status, wantErr: "GET /page: status 302", h: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}},
		{name: "too large", wantReason: fetchfail.TooLarge, wantErr: "page exceeds 8 bytes", h: func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "123456789")
		}},
		{name: "at the cap", wantBody: "12345678", h: func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "12345678")
		}},
		{name: "hangs", wantReason: fetchfail.Timeout, wantErr: "deadline exceeded", h: func(_ http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}},
		{name: "connection refused", wantReason: fetchfail.Refused, wantErr: "refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(tc.h)
			addr := srv.Listener.Addr().String()
			if tc.h == nil {
				srv.Close()
			}
			t.Cleanup(srv.Close)
			tr, err := NewTransport(certfile.ClientParams{}, time.Second, time.Second, logr.Discard())
			if err != nil {
				t.Fatal(err)
			}
			defer tr.CloseIdleConnections()
			body, reason, err := Get(context.Background(), tr, Request{URL: "http://" + addr + "/page", Timeout: 200 * time.Millisecond,
				MaxBytes: 8, Name: "page", Header: tc.header})
			if string(body) != tc.wantBody || reason != tc.wantReason {
				t.Errorf("body %q reason %q, want %q %q", body, reason, tc.wantBody, tc.wantReason)
			}
			if (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewTransport(t *testing.T) {
	t.Parallel()
	tr, err := NewTransport(certfile.ClientParams{}, 5*time.Second, time.Second, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	if tr.Proxy != nil || tr.MaxIdleConnsPerHost != 1 || tr.IdleConnTimeout != 10*time.Second || tr.TLSClientConfig != nil {
		t.Errorf("http: proxy %v, idle %d for %s, TLS %v", tr.Proxy != nil, tr.MaxIdleConnsPerHost, tr.IdleConnTimeout, tr.TLSClientConfig)
	}
	tr, err = NewTransport(certfile.ClientParams{Scheme: "https"}, time.Second, time.Second, logr.Discard())
	if err != nil || tr.TLSClientConfig == nil || !tr.TLSClientConfig.InsecureSkipVerify {
		t.Errorf("https without a CA bundle: %v, TLS %+v", err, tr.TLSClientConfig)
	}
	if _, err := NewTransport(certfile.ClientParams{Scheme: "https", CACertPath: t.TempDir() + "/missing.crt"}, time.Second, time.Second, logr.Discard()); err == nil {
		t.Error("a missing CA bundle was accepted")
	}
}

func TestTiming(t *testing.T) {
	t.Parallel()
	tests := []struct {
		interval, timeout string
		wantInterval      time.Duration
		wantTimeout       time.Duration
		wantSet           bool
	}{
		{wantInterval: 5 * time.Second, wantTimeout: 2 * time.Second},
		{interval: "500ms", wantInterval: 500 * time.Millisecond, wantTimeout: 500 * time.Millisecond},
		{interval: "10s", timeout: "3s", wantInterval: 10 * time.Second, wantTimeout: 3 * time.Second, wantSet: true},
		{timeout: "9s", wantInterval: 5 * time.Second, wantTimeout: 9 * time.Second, wantSet: true},
	}
	for _, tc := range tests {
		tm := NewTiming(tc.interval, tc.timeout, 5*time.Second, 2*time.Second)
		if tm.Interval != tc.wantInterval || tm.Timeout != tc.wantTimeout || tm.timeoutSet != tc.wantSet {
			t.Errorf("%q %q: %s %s %v", tc.interval, tc.timeout, tm.Interval, tm.Timeout, tm.timeoutSet)
		}
		// A dataLayer.sources interval moves a timeout that was not given
		// (to the default, 2s, or the interval, the shorter).
		tm.SetInterval(time.Second)
		want := tc.wantTimeout
		if !tc.wantSet {
			want = time.Second
		}
		if tm.Interval != time.Second || tm.Timeout != want {
			t.Errorf("%q %q after SetInterval(1s): interval %s timeout %s, want 1s %s", tc.interval, tc.timeout, tm.Interval, tm.Timeout, want)
		}
	}
	var got []string
	for _, err := range DurationProblems("0s", "soon", "5s") {
		got = append(got, err.Error())
	}
	want := []string{`interval: must be a positive duration such as 5s, got "0s"`, `timeout: must be a positive duration such as 5s, got "soon"`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	if errs := DurationProblems("", "1s", "5s"); errs != nil {
		t.Errorf("valid: %v", errs)
	}
}

type state struct{ Turn }

// TestSlots: a target is due at once, then an interval later; a busy one
// is not started again; slots bound the polls in flight.
func TestSlots(t *testing.T) {
	t.Parallel()
	slots := NewSlots(1)
	a, b := &state{}, &state{}
	now := time.Unix(0, 0)
	if !slots.Claim(&a.Turn, now, time.Second) || !a.Busy() {
		t.Fatal("a new target is not due at once")
	}
	if slots.Claim(&a.Turn, now.Add(time.Hour), time.Second) || slots.Claim(&b.Turn, now, time.Second) {
		t.Fatal("a busy target, or one past the slots, was started")
	}
	slots.Release(&a.Turn)
	if a.Busy() || slots.Claim(&a.Turn, now.Add(999*time.Millisecond), time.Second) {
		t.Fatal("a target was started again within its interval")
	}
	a.DueNow()
	if !slots.Claim(&a.Turn, now.Add(999*time.Millisecond), time.Second) {
		t.Fatal("DueNow did not make the target due")
	}
	slots.Release(&a.Turn)

	targets := map[string]*state{"gone": {}, "busy": {}, "live": {}}
	targets["busy"].busy.Store(true)
	Forget(targets, map[string]bool{"live": true})
	if _, ok := targets["gone"]; ok || len(targets) != 2 {
		t.Errorf("after Forget: %v", targets)
	}
}

func TestTick(t *testing.T) {
	t.Parallel()
	var rounds atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Tick(ctx, time.Hour, func(time.Time) { // a long interval still ticks every 250ms
			if rounds.Add(1) == 2 {
				cancel()
			}
		})
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("no second round within 5s")
	}
	cancel()
}

func TestCounters(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	opts := CounterOpts{Polls: "test_polls_total", PollsHelp: "Polls.", Errors: "test_poll_errors_total", ErrorsHelp: "Failed polls."}
	polls, failures, err := NewCounters(reg, opts)
	if err != nil {
		t.Fatal(err)
	}
	again, _, err := NewCounters(reg, opts) // another instance of the source continues the series
	if err != nil || again != polls {
		t.Fatalf("second registration: %v, shared %v", err, again == polls)
	}
	if len(failures) != len(fetchfail.Reasons) {
		t.Errorf("%d reasons, want %d", len(failures), len(fetchfail.Reasons))
	}
	failures.Count(fetchfail.Timeout)
	failures.Count("")
	if got := testutil.ToFloat64(failures[fetchfail.Timeout]); got != 1 {
		t.Errorf("timeouts = %v", got)
	}
	a := ErrorsAlias("test_poll_errors_total", "test-source")
	if a.To != "llm_d_epp_datalayer_poll_errors_total" || a.Set["source_type"] != "test-source" {
		t.Errorf("alias %+v", a)
	}
}
