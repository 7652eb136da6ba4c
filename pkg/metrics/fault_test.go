package metrics

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/datastore"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/fetchfail"
)

// Fault-test timing: short enough to keep the test fast, with the timeout
// well below the staleness threshold as New requires.
const (
	faultInterval  = 20 * time.Millisecond
	faultTimeout   = 200 * time.Millisecond
	faultStaleness = 600 * time.Millisecond
)

// faultCase is one kind of model-server fault.
type faultCase struct {
	name    string
	fault   behavior // unused for refused
	refused bool
	reason  string
}

// TestFaultsIsolated runs three healthy endpoints next to one faulty one,
// all four sharing one scrape wave, and checks that the fault never delays
// the others, is logged once when it starts and once when it ends, is
// counted with its reason, and takes the endpoint out of the wave until it
// recovers.
func TestFaultsIsolated(t *testing.T) {
	t.Parallel()
	for _, tc := range []faultCase{
		{name: "hanging page", fault: serveHang, reason: fetchfail.Timeout},
		{name: "page stalled midway", fault: serveStall, reason: fetchfail.Timeout},
		{name: "http 500", fault: serve500, reason: fetchfail.Status},
		{name: "garbage text", fault: serveGarbage, reason: fetchfail.Parse},
		{name: "connection refused", refused: true, reason: fetchfail.Refused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t)
		})
	}
}

func (tc faultCase) run(t *testing.T) {
	page := readPage(t, "vllm.txt")
	healthy := []string{"h1", "h2", "h3"}
	var specs []endpoint.Spec
	for _, name := range healthy {
		specs = append(specs, newModelServer(t, page).spec(t, name, nil))
	}
	bad := newModelServer(t, page)
	badAddr := bad.Listener.Addr().String()
	if tc.refused {
		bad.Close()
	}
	st := newStoreWith(append(specs, specFor(t, "bad", badAddr, nil))...)
	rec := &recorder{}
	s, err := New(st, Options{Interval: faultInterval, Timeout: faultTimeout, StalenessThreshold: faultStaleness,
		Log: rec.logger(), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	badEP, _ := st.Get("bad")
	startScraper(t, s)
	if !tc.refused {
		eventually(t, 3*time.Second, "bad endpoint healthy first", func() bool { return !badEP.Stale() && badEP.Metrics().WaitingQueueSize == 3 })
		eventually(t, 3*time.Second, "all four in the wave", func() bool { return waveMembers(s) == 4 })
		bad.set(tc.fault)
	}
	for _, name := range healthy {
		ep, _ := st.Get(name)
		eventually(t, 3*time.Second, name+" scraped", func() bool { return !ep.Metrics().UpdateTime.IsZero() })
	}

	// During the fault: the faulty endpoint goes stale, the others stay
	// fresh at every sample.
	watchFresh(t, st, healthy, 2*faultStaleness)
	eventually(t, 10*time.Second, "bad endpoint stale", badEP.Stale)
	eventually(t, 10*time.Second, "bad endpoint out of the wave", func() bool { return waveMembers(s) == 3 })
	if n := metricValue(t, s.tel.errors[tc.reason]); n < 1 {
		t.Errorf("openepp_metrics_scrape_errors_total{reason=%q} = %v, want >= 1", tc.reason, n)
	}
	failing := rec.find("metrics scrape failing")
	if len(failing) != 1 || failing[0].KV["endpoint"] != badAddr || failing[0].KV["reason"] != tc.reason {
		t.Fatalf("failing logs = %+v, want exactly one for %s with reason %q", failing, badAddr, tc.reason)
	}
	// The endpoint says why it is stale (for /debug/endpoints), and the run grows.
	eventually(t, 10*time.Second, "a run of failures on the endpoint", func() bool {
		f := badEP.ScrapeFailure()
		return f != nil && f.Reason == tc.reason && f.Error != "" && f.Count >= 2
	})
	for _, name := range healthy {
		if ep, _ := st.Get(name); ep.ScrapeFailure() != nil {
			t.Errorf("healthy endpoint %s reports a scrape failure: %+v", name, ep.ScrapeFailure())
		}
	}

	// Recovery: fresh again, logged once.
	if tc.refused {
		serveAt(t, badAddr, page)
	} else {
		bad.set(serveOK)
	}
	eventually(t, 3*time.Second, "bad endpoint fresh again", func() bool { return !badEP.Stale() })
	eventually(t, time.Second, "the failure run cleared", func() bool { return badEP.ScrapeFailure() == nil })
	eventually(t, time.Second, "recovery logged", func() bool { return rec.count("metrics scrape recovered", badAddr) == 1 })
	eventually(t, 10*time.Second, "bad endpoint back in the wave", func() bool { return waveMembers(s) == 4 })
	time.Sleep(5 * faultInterval)
	got := []int{rec.count("metrics scrape failing", ""), rec.count("metrics scrape recovered", "")}
	if diff := cmp.Diff([]int{1, 1}, got); diff != "" {
		t.Errorf("(failing, recovered) log counts mismatch (-want +got):\n%s", diff)
	}
}

// watchFresh samples the named endpoints for d and fails if any of them is
// stale or older than the staleness threshold at any sample.
func watchFresh(t *testing.T, st *datastore.Store, names []string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, name := range names {
			ep, _ := st.Get(name)
			if ep.Stale() {
				t.Fatalf("healthy endpoint %s went stale during another endpoint's fault", name)
			}
			if age := ep.Metrics().Age(time.Now()); age > faultStaleness {
				t.Fatalf("healthy endpoint %s metrics %v old during another endpoint's fault", name, age)
			}
		}
		time.Sleep(faultInterval)
	}
}

// serveAt starts a metrics server on a fixed address (to end a "connection
// refused" fault).
func serveAt(t *testing.T, addr string, page []byte) {
	t.Helper()
	var l net.Listener
	var err error
	for range 50 { // the port was just released; retry briefly if it lingers
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("re-listen on %s: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(page) }))
	_ = srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
}

func TestFaultReasons(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		handler http.HandlerFunc
		opts    Options
		reason  string
		wantErr string
	}{
		{name: "too large", opts: Options{MaxPageBytes: 64}, reason: fetchfail.TooLarge, wantErr: "exceeds 64 bytes",
			handler: func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(strings.Repeat("# x\n", 100))) }},
		{name: "no configured metric", reason: reasonNoMetrics, wantErr: "no configured metric on the page",
			handler: func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("other_metric 1\n")) }},
		{name: "html page", reason: fetchfail.Parse, wantErr: "parse metrics page",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				_, _ = w.Write([]byte("<html>\n<body>Service Unavailable</body>\n</html>\n"))
			}},
		{name: "404", reason: fetchfail.Status, wantErr: `unexpected status "404 Not Found"`,
			handler: func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }},
		{name: "body cut by timeout", opts: Options{Timeout: 100 * time.Millisecond}, reason: fetchfail.Timeout, wantErr: "read metrics page",
			handler: func(w http.ResponseWriter, r *http.Request) {
				_, _ = w.Write([]byte("vllm:num_requests_waiting 1\n"))
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(tc.handler)
			t.Cleanup(srv.Close)
			st := newStoreWith(specFor(t, "a", srv.Listener.Addr().String(), nil))
			rec := &recorder{}
			tc.opts.Log = rec.logger()
			s, err := New(st, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			ep := st.Snapshot()[0]
			s.newTarget(ep).poll(context.Background())
			if n := metricValue(t, s.tel.errors[tc.reason]); n != 1 {
				t.Errorf("errors{reason=%q} = %v, want 1", tc.reason, n)
			}
			logs := rec.find("metrics scrape failing")
			if len(logs) != 1 || logs[0].Err == nil || !strings.Contains(logs[0].Err.Error(), tc.wantErr) {
				t.Errorf("failing logs = %+v, want one whose error contains %q", logs, tc.wantErr)
			}
			if !ep.Stale() || !ep.Metrics().UpdateTime.IsZero() {
				t.Errorf("after a failed first scrape: stale=%v updated=%v, want stale and never updated", ep.Stale(), ep.Metrics().UpdateTime)
			}
		})
	}
}
