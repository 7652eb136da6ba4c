package metrics

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/promalias"
)

// ignoreTime compares snapshots without their UpdateTime.
var ignoreTime = cmpopts.IgnoreFields(endpoint.Metrics{}, "UpdateTime")

func TestScrapeEveryEngine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		engine, page, path string
		want               endpoint.Metrics
	}{
		{engine: EngineVLLM, page: "vllm.txt", path: "/metrics", want: endpoint.Metrics{
			WaitingQueueSize: 3, RunningRequestsSize: 7, KVCacheUsagePercent: 0.4213,
			ActiveModels: map[string]int{"sql-lora": 0, "tweet-lora": 0}, WaitingModels: map[string]int{"news-lora": 0},
			MaxActiveModels: 4, CacheBlockSize: 16, CacheNumBlocks: 27153, BaseModel: "meta-llama/Llama-3.1-8B-Instruct",
		}},
		{engine: EngineSGLang, page: "sglang.txt", path: "/metrics", want: endpoint.Metrics{
			WaitingQueueSize: 5, RunningRequestsSize: 12, KVCacheUsagePercent: 0.61, CacheBlockSize: 1, CacheNumBlocks: 161184,
		}},
		{engine: EngineSGLang, page: "sglang-gauges.txt", path: "/metrics", want: endpoint.Metrics{
			WaitingQueueSize: 1, RunningRequestsSize: 8, KVCacheUsagePercent: 0.25, CacheBlockSize: 64, CacheNumBlocks: 2500,
		}},
		{engine: EngineAtom, page: "atom.txt", path: "/metrics", want: endpoint.Metrics{
			WaitingQueueSize: 6, RunningRequestsSize: 10, KVCacheUsagePercent: 0.5, CacheBlockSize: 16, CacheNumBlocks: 12000,
		}},
		{engine: EngineTriton, page: "triton.txt", path: "/metrics", want: endpoint.Metrics{WaitingQueueSize: 3, RunningRequestsSize: 11}},
		{engine: EngineTRTLLMServe, page: "trtllm-serve.txt", path: "/prometheus/metrics", want: endpoint.Metrics{
			WaitingQueueSize: 2, RunningRequestsSize: 9, KVCacheUsagePercent: 0.375, CacheBlockSize: 32, CacheNumBlocks: 8192,
		}},
		{engine: EngineTritonTensorRTLLM, page: "triton-tensorrt-llm.txt", path: "/metrics", want: endpoint.Metrics{
			WaitingQueueSize: 4, RunningRequestsSize: 6, KVCacheUsagePercent: 0.25, CacheBlockSize: 64, CacheNumBlocks: 4096,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.page, func(t *testing.T) {
			t.Parallel()
			ms := newModelServerAt(t, readPage(t, tc.page), tc.path)
			st := newStoreWith(ms.spec(t, "ep", map[string]string{EngineLabelLLMD: tc.engine}))
			reg := prometheus.NewPedanticRegistry()
			s, err := New(st, Options{Interval: 20 * time.Millisecond, Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			startScraper(t, s)
			ep := st.Snapshot()[0]
			eventually(t, 3*time.Second, "first scrape", func() bool { return !ep.Metrics().UpdateTime.IsZero() })
			tc.want.ScrapeInterval = 20 * time.Millisecond // consumers judge freshness by it
			if diff := cmp.Diff(tc.want, *ep.Metrics(), ignoreTime); diff != "" {
				t.Errorf("metrics mismatch (-want +got):\n%s", diff)
			}
			if ep.Stale() {
				t.Error("endpoint stale after a successful scrape")
			}
			// Later scrapes of an unchanged page keep refreshing UpdateTime.
			first := ep.Metrics().UpdateTime
			eventually(t, 3*time.Second, "refresh", func() bool { return ep.Metrics().UpdateTime.After(first) })
			if n := gathered(t, reg, "openepp_metrics_scrapes_total", nil); n < 2 {
				t.Errorf("openepp_metrics_scrapes_total = %v, want >= 2", n)
			}
			if n := gathered(t, reg, "openepp_metrics_scrape_duration_seconds", nil); n < 2 {
				t.Errorf("openepp_metrics_scrape_duration_seconds count = %v, want >= 2", n)
			}
			if n := gathered(t, reg, "openepp_metrics_stale_endpoints", nil); n != 0 {
				t.Errorf("openepp_metrics_stale_endpoints = %v, want 0", n)
			}
			// Every configured field was read, or its alternative was
			// (SGLang's cache geometry).
			for f := range numFields {
				if n := gathered(t, reg, "openepp_metrics_field_errors_total", map[string]string{"field": f.String()}); n != 0 {
					t.Errorf("openepp_metrics_field_errors_total{field=%q} = %v, want 0", f, n)
				}
			}
		})
	}
}

func TestMembershipChanges(t *testing.T) {
	t.Parallel()
	page := readPage(t, "vllm.txt")
	a, b := newModelServer(t, page), newModelServer(t, page)
	st := newStoreWith(a.spec(t, "a", nil))
	s, err := New(st, Options{Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	startScraper(t, s)
	eventually(t, 3*time.Second, "a scraped", func() bool { return a.hits.Load() > 0 })

	// A new endpoint is scraped promptly.
	added := time.Now()
	st.Upsert("test", b.spec(t, "b", nil))
	eventually(t, 3*time.Second, "b scraped", func() bool { return b.hits.Load() > 0 })
	if d := time.Since(added); d > time.Second {
		t.Errorf("new endpoint first scraped after %v", d)
	}
	eventually(t, time.Second, "two loops", func() bool { return s.active.Load() == 2 })
	eventually(t, 3*time.Second, "both in the wave", func() bool { return waveMembers(s) == 2 })

	// A removed endpoint stops being scraped and its loop exits.
	st.Delete("a")
	eventually(t, 3*time.Second, "one loop", func() bool { return s.active.Load() == 1 })
	hits := a.hits.Load()
	time.Sleep(100 * time.Millisecond)
	if got := a.hits.Load(); got != hits {
		t.Errorf("removed endpoint still scraped: hits %d -> %d", hits, got)
	}

	// A label change replaces the *Endpoint: the old loop stops, a new one
	// scrapes it with the new engine, and freshness carries over.
	sg := newModelServer(t, readPage(t, "sglang.txt"))
	st.Replace("test", []endpoint.Spec{b.spec(t, "b", nil), sg.spec(t, "c", map[string]string{EngineLabelGIE: EngineVLLM})})
	eventually(t, 3*time.Second, "c scraped", func() bool { return sg.hits.Load() > 0 })
	st.Replace("test", []endpoint.Spec{b.spec(t, "b", nil), sg.spec(t, "c", map[string]string{EngineLabelGIE: EngineSGLang})})
	eventually(t, 3*time.Second, "c scraped as sglang", func() bool {
		ep, ok := st.Get("c")
		return ok && ep.Metrics().RunningRequestsSize == 12 && !ep.Stale()
	})
	eventually(t, time.Second, "two loops after relabel", func() bool { return s.active.Load() == 2 })
}

func TestUnknownEngineLoggedOnceAndCounted(t *testing.T) {
	t.Parallel()
	ms := newModelServer(t, readPage(t, "vllm.txt"))
	labels := map[string]string{EngineLabelGIE: "mystery"}
	st := newStoreWith(ms.spec(t, "a", labels), ms.spec(t, "b", labels))
	rec := &recorder{}
	s, err := New(st, Options{Interval: 20 * time.Millisecond, Log: rec.logger(), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	startScraper(t, s)
	for _, name := range []string{"a", "b"} {
		ep, _ := st.Get(name)
		eventually(t, 3*time.Second, "scraped with the default engine", func() bool { return ep.Metrics().WaitingQueueSize == 3 })
	}
	if n := rec.count("unknown engine type, scraping with the default engine", ""); n != 1 {
		t.Errorf("unknown engine logged %d times, want 1", n)
	}
	if n := metricValue(t, s.tel.unknownEngine.WithLabelValues("mystery")); n != 2 {
		t.Errorf("openepp_metrics_unknown_engine_total{engine=mystery} = %v, want 2", n)
	}
}

func TestPoolGaugesFreshOnly(t *testing.T) {
	t.Parallel()
	ms := newModelServer(t, readPage(t, "vllm.txt"))
	st := newStoreWith(ms.spec(t, "a", nil), specFor(t, "dead", refusedAddr(t), nil))
	reg := prometheus.NewPedanticRegistry()
	s, err := New(st, Options{Interval: 20 * time.Millisecond, Registerer: reg, PoolNames: []string{"pool-1"}})
	if err != nil {
		t.Fatal(err)
	}
	startScraper(t, s)
	ep, _ := st.Get("a")
	eventually(t, 3*time.Second, "a fresh", func() bool { return !ep.Stale() && ep.Metrics().WaitingQueueSize == 3 })
	pool := map[string]string{"name": "pool-1"}
	got := map[string]float64{}
	for _, name := range []string{"inference_pool_average_queue_size", "inference_pool_average_running_requests",
		"inference_pool_average_kv_cache_utilization", "inference_pool_ready_pods"} {
		got[name] = gathered(t, reg, name, pool)
	}
	got["openepp_metrics_stale_endpoints"] = gathered(t, reg, "openepp_metrics_stale_endpoints", nil)
	for _, pod := range []string{"a", "dead"} {
		got["per_pod_queue_size "+pod] = gathered(t, reg, "inference_pool_per_pod_queue_size", map[string]string{"name": "pool-1", "model_server_pod": pod})
	}
	// llm-d's names for the same gauges, and its spread over the one fresh
	// endpoint.
	page := promalias.New(reg, TelemetryAliases)
	got["llm_d_epp_ready_endpoints"] = gathered(t, page, "llm_d_epp_ready_endpoints", pool)
	got["llm_d_epp_average_queue_size"] = gathered(t, page, "llm_d_epp_average_queue_size", pool)
	got["llm_d_epp_per_endpoint_queue_size a"] = gathered(t, page, "llm_d_epp_per_endpoint_queue_size",
		map[string]string{"name": "pool-1", "model_server_endpoint": "a"})
	got["llm_d_epp_std_dev_queue_size"] = gathered(t, page, "llm_d_epp_std_dev_queue_size", pool)
	want := map[string]float64{
		// Averages over the fresh endpoint only; the dead one is stale.
		"inference_pool_average_queue_size":           3,
		"inference_pool_average_running_requests":     7,
		"inference_pool_average_kv_cache_utilization": 0.4213,
		"inference_pool_ready_pods":                   2,
		"openepp_metrics_stale_endpoints":             1,
		"per_pod_queue_size a":                        3,
		"per_pod_queue_size dead":                     -1, // stale endpoints have no series
		"llm_d_epp_ready_endpoints":                   2,
		"llm_d_epp_average_queue_size":                3,
		"llm_d_epp_per_endpoint_queue_size a":         3,
		"llm_d_epp_std_dev_queue_size":                0,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pool gauges mismatch (-want +got):\n%s", diff)
	}
}

// TestFreshStdDev checks the pool's spread: the population standard
// deviation over fresh endpoints, stale ones left out.
func TestFreshStdDev(t *testing.T) {
	t.Parallel()
	var eps []*endpoint.Endpoint
	for i, q := range []int{2, 4, 4, 4, 5, 5, 7, 9, 1000} {
		e := endpoint.New(endpoint.Spec{Name: fmt.Sprint(i), Address: "10.0.0.1", Port: 8000 + i})
		e.SetMetrics(&endpoint.Metrics{WaitingQueueSize: q})
		e.SetStale(q == 1000)
		eps = append(eps, e)
	}
	queue := func(m *endpoint.Metrics) float64 { return float64(m.WaitingQueueSize) }
	if got := freshStdDev(eps, queue); got != 2 {
		t.Errorf("std dev = %v, want 2", got)
	}
	if got := freshStdDev(eps[8:], queue); got != 0 {
		t.Errorf("std dev of stale endpoints only = %v, want 0", got)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	t.Parallel()
	skip := false
	tests := []struct {
		name    string
		opts    Options
		wantErr []string
	}{
		{name: "timeout not below staleness", opts: Options{Timeout: 2 * time.Second},
			wantErr: []string{"timeout 2s must be below the staleness threshold 2s"}},
		{name: "scheme and path", opts: Options{Scheme: "ftp", Path: "metrics", InsecureSkipVerify: &skip},
			wantErr: []string{`scheme "ftp": must be http or https`, `path "metrics": must start with '/'`}},
		{name: "negative", opts: Options{Interval: -1}, wantErr: []string{"must not be negative"}},
		{name: "engines and options together", opts: Options{DefaultEngine: "nope", Timeout: 5 * time.Second},
			wantErr: []string{`defaultEngine: "nope"`, "timeout 5s"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(newStoreWith(), tc.opts)
			if err == nil {
				t.Fatal("want error")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q missing %q", err, w)
				}
			}
		})
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New(nil store): want error")
	}
}

func TestNewRegistrationConflict(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	if _, err := New(newStoreWith(), Options{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(newStoreWith(), Options{Registerer: reg}); err == nil || !strings.Contains(err.Error(), "register scraper metrics") {
		t.Errorf("second New on one registry: err = %v, want a registration error", err)
	}
}

func TestStartTwice(t *testing.T) {
	t.Parallel()
	s, err := New(newStoreWith(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	startScraper(t, s)
	eventually(t, time.Second, "started", s.started.Load)
	if err := s.Start(context.Background()); err == nil {
		t.Error("second Start: want error")
	}
}

func TestHTTPSScheme(t *testing.T) {
	t.Parallel()
	page := readPage(t, "vllm.txt")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(page) }))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the rejected handshake is expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	verify := false
	tests := []struct {
		name      string
		skip      *bool
		wantOK    bool
		wantError string
	}{
		{name: "self-signed accepted by default", wantOK: true},
		{name: "verification on rejects it", skip: &verify, wantError: "certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := newStoreWith(specFor(t, "a", srv.Listener.Addr().String(), nil))
			rec := &recorder{}
			s, err := New(st, Options{Scheme: "https", InsecureSkipVerify: tc.skip, Log: rec.logger()})
			if err != nil {
				t.Fatal(err)
			}
			ep := st.Snapshot()[0]
			tg := s.newTarget(ep)
			tg.poll(context.Background())
			tg.conn.close()
			if got := !ep.Stale(); got != tc.wantOK {
				t.Errorf("fresh = %v, want %v", got, tc.wantOK)
			}
			if tc.wantError != "" {
				logs := rec.find("metrics scrape failing")
				if len(logs) != 1 || !strings.Contains(logs[0].Err.Error(), tc.wantError) {
					t.Errorf("failing logs = %+v, want one mentioning %q", logs, tc.wantError)
				}
			}
		})
	}
}

func TestPhase(t *testing.T) {
	t.Parallel()
	const iv = 50 * time.Millisecond
	tests := []struct {
		name     string
		slots    int
		distinct func(n int) bool // how many distinct grid offsets 40 endpoints get
	}{
		{name: "spread", slots: -1, distinct: func(n int) bool { return n > 20 }},
		{name: "auto: 40 endpoints in waves of 25", slots: 0, distinct: func(n int) bool { return n >= 2 && n <= 4 }},
		{name: "one slot", slots: 1, distinct: func(n int) bool { return n == 1 }},
		{name: "four slots", slots: 4, distinct: func(n int) bool { return n >= 2 && n <= 4 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var specs []endpoint.Spec
			for i := range 40 {
				specs = append(specs, endpoint.Spec{Name: fmt.Sprintf("ep-%d", i), Address: "127.0.0.1", Port: 8000 + i})
			}
			st := newStoreWith(specs...)
			s, err := New(st, Options{Interval: iv, AlignedSlots: tc.slots})
			if err != nil {
				t.Fatal(err)
			}
			s.setSlots(len(specs)) // as Start's reconcile does
			offsets := map[time.Duration]bool{}
			now := time.Now()
			for _, ep := range st.Snapshot() {
				p := s.newTarget(ep).phaseAt(now)
				if p < iv/8 || p >= iv+iv/8 {
					t.Fatalf("phase %v outside [%v, %v)", p, iv/8, iv+iv/8)
				}
				// Where in the shared grid the first tick lands.
				offsets[time.Duration(now.Add(p).UnixNano()%int64(iv))] = true
			}
			if !tc.distinct(len(offsets)) {
				t.Errorf("%d distinct scrape instants for 40 endpoints", len(offsets))
			}
		})
	}
}

func TestIntervalStretchesForLargePools(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		endpoints int
		limit     int
		want      time.Duration
	}{
		{name: "100 endpoints fit", endpoints: 100, limit: 4000, want: 50 * time.Millisecond},
		{name: "1000 endpoints stretch", endpoints: 1000, limit: 4000, want: 250 * time.Millisecond},
		{name: "no cap", endpoints: 1000, limit: -1, want: 50 * time.Millisecond},
	}
	for _, tc := range tests {
		s, err := New(newStoreWith(), Options{Interval: 50 * time.Millisecond, MaxScrapesPerSecond: tc.limit})
		if err != nil {
			t.Fatal(err)
		}
		s.setInterval(tc.endpoints)
		if got := s.interval(); got != tc.want {
			t.Errorf("%s: interval = %v, want %v", tc.name, got, tc.want)
		}
	}
}
