package metrics

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/sim"
)

// narrowMode is how a test server answers a name[] query.
type narrowMode int32

const (
	honourQuery narrowMode = iota // only the named families, as prometheus_client does
	ignoreQuery                   // the whole page
	emptyPage                     // 200 and nothing: a registry that cannot be filtered
	reject404                     // a router that refuses unknown queries
	fail500                       // the server is failing, query or not
	busy429                       // the server sheds load, query or not
)

// narrowServer serves a whole vLLM page, answering name[] queries per mode,
// and records every request's query.
type narrowServer struct {
	*httptest.Server
	page    []byte
	mode    atomic.Int32
	mu      sync.Mutex
	queries []string
}

func newNarrowServer(t *testing.T, page []byte) *narrowServer {
	t.Helper()
	ns := &narrowServer{page: page}
	ns.Server = httptest.NewServer(http.HandlerFunc(ns.serve))
	t.Cleanup(ns.Close)
	return ns
}

func (ns *narrowServer) serve(w http.ResponseWriter, r *http.Request) {
	ns.mu.Lock()
	ns.queries = append(ns.queries, r.URL.RawQuery)
	ns.mu.Unlock()
	names := r.URL.Query()["name[]"]
	mode := narrowMode(ns.mode.Load())
	switch {
	case mode == fail500:
		http.Error(w, "engine dead", http.StatusInternalServerError)
	case mode == busy429:
		http.Error(w, "slow down", http.StatusTooManyRequests)
	case len(names) == 0 || mode == ignoreQuery:
		_, _ = w.Write(ns.page)
	case mode == emptyPage:
	case mode == reject404:
		http.NotFound(w, r)
	default:
		_, _ = w.Write(onlyFamilies(ns.page, names))
	}
}

// lastQuery is the query of the latest request.
func (ns *narrowServer) lastQuery() string {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return ns.queries[len(ns.queries)-1]
}

// onlyFamilies keeps the sample, HELP and TYPE lines of the named metrics.
func onlyFamilies(page []byte, names []string) []byte {
	var out []byte
	for _, line := range bytes.SplitAfter(page, []byte("\n")) {
		name := string(line)
		for _, prefix := range []string{"# HELP ", "# TYPE "} {
			name = strings.TrimPrefix(name, prefix)
		}
		if i := strings.IndexAny(name, "{ "); i > 0 {
			name = name[:i]
		}
		for _, n := range names {
			if name == n {
				out = append(out, line...)
			}
		}
	}
	return out
}

// TestNarrowPages drives one endpoint's scrapes by hand against servers
// that honour, ignore, mishandle or refuse the name[] query, and checks
// what each scrape asked for, what was applied and what was counted.
func TestNarrowPages(t *testing.T) {
	t.Parallel()
	const families = "name%5B%5D=vllm%3Anum_requests_waiting&name%5B%5D=vllm%3Anum_requests_running"
	type scrape struct {
		mode       narrowMode
		wantQuery  bool // the request asked for the families
		wantUpdate bool // the page was applied
	}
	tests := []struct {
		name       string
		scrapes    []scrape
		wantNarrow narrowState
		wantErrors float64
	}{
		{name: "honoured", scrapes: []scrape{
			{honourQuery, false, true}, {honourQuery, true, true}, {honourQuery, true, true},
		}, wantNarrow: narrowOn},
		{name: "ignored: the whole page is applied, then asked for as such", scrapes: []scrape{
			{ignoreQuery, false, true}, {ignoreQuery, true, true}, {ignoreQuery, false, true},
		}, wantNarrow: narrowRejected},
		{name: "empty answer discarded, not a failure", scrapes: []scrape{
			{emptyPage, false, true}, {emptyPage, true, false}, {emptyPage, false, true},
		}, wantNarrow: narrowRejected},
		{name: "query refused with 404, not a failure", scrapes: []scrape{
			{reject404, false, true}, {reject404, true, false}, {reject404, false, true},
		}, wantNarrow: narrowRejected},
		{name: "a failing server fails, and the probe waits for it", scrapes: []scrape{
			{honourQuery, false, true}, {fail500, true, false}, {honourQuery, true, true},
		}, wantNarrow: narrowOn, wantErrors: 1},
		{name: "rate limited during the probe: a failure, and the probe is tried again", scrapes: []scrape{
			{honourQuery, false, true}, {busy429, true, false}, {honourQuery, true, true},
		}, wantNarrow: narrowOn, wantErrors: 1},
		{name: "families lost after it worked: discarded, whole pages again", scrapes: []scrape{
			{emptyPage, false, true}, {honourQuery, true, true}, {emptyPage, true, false}, {emptyPage, false, true},
		}, wantNarrow: narrowRejected},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := newNarrowServer(t, readPage(t, "vllm.txt"))
			clk, rec, s, tg := handDriven(t, specFor(t, "a", ns.Listener.Addr().String(), nil))
			ep := tg.ep
			for i, sc := range tc.scrapes {
				clk.Advance(time.Second)
				ns.mode.Store(int32(sc.mode))
				tg.poll(context.Background())
				q := ns.lastQuery()
				if got := strings.HasPrefix(q, families); got != sc.wantQuery {
					t.Errorf("scrape %d: query %q, want the families: %v", i, q, sc.wantQuery)
				}
				if got := ep.Metrics().UpdateTime.Equal(clk.Now()); got != sc.wantUpdate {
					t.Errorf("scrape %d: applied = %v, want %v", i, got, sc.wantUpdate)
				}
			}
			if tg.narrow != tc.wantNarrow {
				t.Errorf("narrow state = %d, want %d", tg.narrow, tc.wantNarrow)
			}
			var errs float64
			for _, c := range s.tel.errors {
				errs += metricValue(t, c)
			}
			if errs != tc.wantErrors {
				t.Errorf("scrape errors = %v, want %v", errs, tc.wantErrors)
			}
			want := int64(0)
			if tc.wantNarrow == narrowOn {
				want = 1
			}
			if got := s.narrowEndpoints.Load(); got != want {
				t.Errorf("narrow endpoints = %d, want %d", got, want)
			}
			if m := ep.Metrics(); m.WaitingQueueSize != 3 || m.RunningRequestsSize != 7 || ep.Stale() {
				t.Errorf("metrics %+v stale=%v, want the page's 3 waiting, 7 running, fresh", m, ep.Stale())
			}
			if tc.wantErrors == 0 && rec.count("metrics scrape failing", "") != 0 {
				t.Error("a narrow probe was logged as a failing scrape")
			}
		})
	}
}

// TestNarrowNever checks that a path with a query of its own, and the
// FullPages option, keep every request as configured.
func TestNarrowNever(t *testing.T) {
	t.Parallel()
	for name, opts := range map[string]Options{
		"path with a query": {Path: "/metrics?format=text"},
		"FullPages":         {FullPages: true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ns := newNarrowServer(t, readPage(t, "vllm.txt"))
			st := newStoreWith(specFor(t, "a", ns.Listener.Addr().String(), nil))
			s, err := New(st, opts)
			if err != nil {
				t.Fatal(err)
			}
			tg := s.newTarget(st.Snapshot()[0])
			var got []string
			for range 3 {
				tg.poll(context.Background())
				got = append(got, ns.lastQuery())
			}
			q := strings.TrimPrefix(opts.Path, "/metrics?")
			if diff := cmp.Diff([]string{q, q, q}, got); diff != "" {
				t.Errorf("queries mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNarrowPagesFromSimulator scrapes a loaded vLLM simulator, whose
// client_golang handler honours name[], through its waves, and checks that
// the narrow pages carry the same state as the whole one.
func TestNarrowPagesFromSimulator(t *testing.T) {
	t.Parallel()
	inst := startSim(t, sim.EngineVLLM)
	st := newStoreWith(specFor(t, "sim", inst.HostPort(), nil))
	s, err := New(st, Options{Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	startScraper(t, s)
	ep := st.Snapshot()[0]
	eventually(t, 5*time.Second, "narrow pages", func() bool { return s.narrowEndpoints.Load() == 1 })
	loadSim(t, inst, 3)
	eventually(t, 5*time.Second, "2 running and 1 waiting scraped", func() bool {
		m := ep.Metrics()
		return m.RunningRequestsSize == 2 && m.WaitingQueueSize == 1 && m.KVCacheUsagePercent > 0
	})
	em := inst.EngineMetrics()
	if m := ep.Metrics(); m.CacheBlockSize != em.BlockSize || m.CacheNumBlocks != em.NumBlocks || m.MaxActiveModels != em.MaxLoRAs {
		t.Errorf("cache and LoRA fields %+v, want block size %d, blocks %d, max LoRAs %d", m, em.BlockSize, em.NumBlocks, em.MaxLoRAs)
	}
	if n := s.narrowEndpoints.Load(); n != 1 || ep.Stale() {
		t.Errorf("narrow endpoints %d, stale %v: want 1, fresh", n, ep.Stale())
	}
}

// TestNarrowQuery checks the names asked for: each family, plus the base
// of a sample-suffixed name (client_golang filters by family name).
func TestNarrowQuery(t *testing.T) {
	t.Parallel()
	got, err := url.ParseQuery(narrowQuery([]string{"vllm:num_requests_waiting", "x_bucket", "y_total", "y"}))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"vllm:num_requests_waiting", "x_bucket", "x", "y_total", "y"}
	if diff := cmp.Diff(want, got["name[]"]); diff != "" {
		t.Errorf("names mismatch (-want +got):\n%s", diff)
	}
}

// TestNarrowRetry: a target that went back to whole pages probes again
// after narrowRetry, so a server upgraded in place (or one that refused the
// probe while unwell) gets narrow pages without its target being recreated.
func TestNarrowRetry(t *testing.T) {
	t.Parallel()
	ns := newNarrowServer(t, readPage(t, "vllm.txt"))
	clk, _, _, tg := handDriven(t, specFor(t, "a", ns.Listener.Addr().String(), nil))
	scrape := func(mode narrowMode, after time.Duration) (asked bool) {
		clk.Advance(after)
		ns.mode.Store(int32(mode))
		tg.poll(context.Background())
		return strings.Contains(ns.lastQuery(), "name%5B%5D=")
	}
	scrape(reject404, time.Second)
	if !scrape(reject404, time.Second) || tg.narrow != narrowRejected {
		t.Fatalf("the probe was not refused: state %d", tg.narrow)
	}
	if scrape(honourQuery, narrowRetry-2*time.Second) {
		t.Error("probed again before narrowRetry passed")
	}
	scrape(honourQuery, 2*time.Second) // the reference whole page
	if !scrape(honourQuery, time.Second) || tg.narrow != narrowOn {
		t.Errorf("not narrow after the retry: state %d", tg.narrow)
	}
}
