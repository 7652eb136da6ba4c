package metrics

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/datastore"
)

// waveMembers is how many endpoints the scraper's waves hold.
func waveMembers(s *Scraper) int { return int(s.waveEndpoints.Load()) }

// TestWaveRetriesClosedConnections has a server close every kept-alive
// connection between two scrapes, as an idle timeout shorter than the
// interval does: each wave then finds its connection gone and must retry
// on a fresh one without counting an error or letting the endpoint go
// stale.
func TestWaveRetriesClosedConnections(t *testing.T) {
	t.Parallel()
	page := readPage(t, "vllm.txt")
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(page) }))
	srv.Config.IdleTimeout = 10 * time.Millisecond
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	s, st := scrapeServer(t, srv, Options{Interval: 40 * time.Millisecond, Timeout: faultTimeout, StalenessThreshold: faultStaleness})
	ep := st.Snapshot()[0]
	eventually(t, 3*time.Second, "a dozen reconnections", func() bool { return conns.Load() >= 12 })
	if ep.Stale() {
		t.Error("endpoint stale while its server only closed idle connections")
	}
	noScrapeErrors(t, s)
}

// TestOwnInstantsUseNoWave checks that AlignedSlots -1 keeps every
// endpoint on its own goroutine.
func TestOwnInstantsUseNoWave(t *testing.T) {
	t.Parallel()
	page := readPage(t, "vllm.txt")
	a, b := newModelServer(t, page), newModelServer(t, page)
	st := newStoreWith(a.spec(t, "a", nil), b.spec(t, "b", nil))
	s, err := New(st, Options{Interval: 20 * time.Millisecond, AlignedSlots: -1})
	if err != nil {
		t.Fatal(err)
	}
	startScraper(t, s)
	eventually(t, 3*time.Second, "both scraped repeatedly", func() bool { return a.hits.Load() > 5 && b.hits.Load() > 5 })
	if n := waveMembers(s); n != 0 {
		t.Errorf("%d endpoints in waves, want 0", n)
	}
}

// TestEmptyWaveRetires checks that a wave whose members left does not
// linger: its goroutine ends after ten idle intervals, and a later
// endpoint of the same slot starts a new one.
func TestEmptyWaveRetires(t *testing.T) {
	t.Parallel()
	page := readPage(t, "vllm.txt")
	a := newModelServer(t, page)
	st := newStoreWith(a.spec(t, "a", nil))
	s, err := New(st, Options{Interval: 10 * time.Millisecond, AlignedSlots: 1})
	if err != nil {
		t.Fatal(err)
	}
	startScraper(t, s)
	waves := func() int {
		s.wavesMu.Lock()
		defer s.wavesMu.Unlock()
		return len(s.waves)
	}
	eventually(t, 3*time.Second, "a in its wave", func() bool { return waveMembers(s) == 1 })
	st.Delete("a")
	eventually(t, 3*time.Second, "the empty wave retired", func() bool { return waves() == 0 })
	st.Upsert("test", a.spec(t, "b", nil))
	eventually(t, 3*time.Second, "b in a new wave", func() bool { return waves() == 1 && waveMembers(s) == 1 })
}

// TestWaveOverTLS checks that an https endpoint joins its wave and keeps
// being scraped on its one kept-alive TLS connection (a slow answer under
// the race detector may briefly send it to scrape alone, on the same
// connection).
func TestWaveOverTLS(t *testing.T) {
	t.Parallel()
	page := readPage(t, "vllm.txt")
	var hits, conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		_, _ = w.Write(page)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	s, _ := scrapeServer(t, srv, Options{Scheme: "https", Interval: 20 * time.Millisecond})
	eventually(t, 3*time.Second, "a in its wave", func() bool { return waveMembers(s) == 1 })
	from := hits.Load()
	eventually(t, 3*time.Second, "ten more scrapes", func() bool { return hits.Load() >= from+10 })
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
	noScrapeErrors(t, s)
}

// TestSlowServerScrapesAlone checks that a server which turns slow (but
// answers within the timeout) leaves its wave without a failed scrape,
// and rejoins when it is quick again.
func TestSlowServerScrapesAlone(t *testing.T) {
	t.Parallel()
	page := readPage(t, "vllm.txt")
	var delay atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(time.Duration(delay.Load()))
		_, _ = w.Write(page)
	}))
	t.Cleanup(srv.Close)
	s, st := scrapeServer(t, srv, Options{Interval: 40 * time.Millisecond, Timeout: faultTimeout, StalenessThreshold: faultStaleness})
	ep := st.Snapshot()[0]
	eventually(t, 3*time.Second, "a in its wave", func() bool { return waveMembers(s) == 1 })
	delay.Store(int64(15 * time.Millisecond)) // past the wave's 4 ms budget
	eventually(t, 3*time.Second, "a scraped alone", func() bool { return waveMembers(s) == 0 })
	watchFresh(t, st, []string{"a"}, 10*40*time.Millisecond)
	delay.Store(0)
	eventually(t, 3*time.Second, "a back in its wave", func() bool { return waveMembers(s) == 1 })
	if ep.Stale() {
		t.Error("endpoint stale after a slow but successful period")
	}
	noScrapeErrors(t, s)
}

// scrapeServer runs a scraper with opts on one endpoint, "a", served by
// srv, until the test ends.
func scrapeServer(t *testing.T, srv *httptest.Server, opts Options) (*Scraper, *datastore.Store) {
	t.Helper()
	st := newStoreWith(specFor(t, "a", srv.Listener.Addr().String(), nil))
	opts.Registerer = prometheus.NewRegistry()
	s, err := New(st, opts)
	if err != nil {
		t.Fatal(err)
	}
	startScraper(t, s)
	return s, st
}

func noScrapeErrors(t *testing.T, s *Scraper) {
	t.Helper()
	for reason, c := range s.tel.errors {
		if n := metricValue(t, c); n != 0 {
			t.Errorf("openepp_metrics_scrape_errors_total{reason=%q} = %v, want 0", reason, n)
		}
	}
}

// TestWavesRegroupAsPoolChanges adds endpoints one at a time, as a
// Kubernetes pool's pods arrive, and checks that the waves end up as if the
// pool had been listed at once: one wave per instant of the current count,
// holding every endpoint. Shrinking the pool merges them again.
func TestWavesRegroupAsPoolChanges(t *testing.T) {
	t.Parallel()
	page := readPage(t, "vllm.txt")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(page) }))
	t.Cleanup(srv.Close)
	st := datastore.New()
	s, err := New(st, Options{Interval: 50 * time.Millisecond, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	startScraper(t, s)
	settled := func(endpoints, instants int) func() bool {
		return func() bool {
			s.wavesMu.Lock()
			defer s.wavesMu.Unlock()
			for sl := range s.waves {
				if sl.of != instants {
					return false
				}
			}
			return len(s.waves) == instants && waveMembers(s) == endpoints
		}
	}
	name := func(i int) string { return fmt.Sprintf("ep-%d", i) }
	for i := range 30 {
		st.Upsert("test", specFor(t, name(i), srv.Listener.Addr().String(), nil))
		time.Sleep(2 * time.Millisecond) // let the scraper see every size
	}
	eventually(t, 5*time.Second, "30 endpoints in 2 waves", settled(30, 2))
	for i := 18; i < 30; i++ {
		st.Delete(name(i))
	}
	eventually(t, 5*time.Second, "18 endpoints in 1 wave", settled(18, 1))
	for _, ep := range st.Snapshot() {
		if ep.Stale() {
			t.Errorf("%s stale after regrouping", ep.Name)
		}
	}
	noScrapeErrors(t, s)
}

func TestSlotCountFollowsPoolSize(t *testing.T) {
	t.Parallel()
	s, err := New(datastore.New(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct{ endpoints, want int }{
		{0, 1}, {1, 1}, {25, 1}, {26, 2}, {50, 2}, {51, 3},
		{46, 3}, // within the margin below 50: kept
		{45, 2}, {21, 2}, {20, 1}, {100, 4}, {1, 1},
	}
	for _, st := range steps {
		s.setSlots(st.endpoints)
		if got := s.slots(); got != st.want {
			t.Errorf("after a pool of %d: %d instants, want %d", st.endpoints, got, st.want)
		}
	}
	fixed, err := New(datastore.New(), Options{AlignedSlots: 3})
	if err != nil {
		t.Fatal(err)
	}
	fixed.setSlots(100)
	if got := fixed.slots(); got != 3 {
		t.Errorf("AlignedSlots 3: %d instants", got)
	}
}
