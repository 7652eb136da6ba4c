package filters

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

func TestUtilizationDetectorFilter(t *testing.T) {
	t.Parallel()
	aged := func(age time.Duration) *endpoint.Metrics {
		m := load(0, 0)
		m.UpdateTime = plugintest.Epoch.Add(-age)
		return m
	}
	// scraped gives metrics of the given age from a source refreshing them
	// every interval: two intervals of age are always allowed.
	scraped := func(age, interval time.Duration) *endpoint.Metrics {
		m := aged(age)
		m.ScrapeInterval = interval
		return m
	}
	flagged := ep("flagged", "10.0.0.9", nil, load(0, 0))
	flagged.SetStale(true)
	eps := []*endpoint.Endpoint{
		ep("idle", "10.0.0.1", nil, load(0, 0)),
		ep("q5", "10.0.0.2", nil, load(5, 0.1)),
		ep("q6", "10.0.0.3", nil, load(6, 0.1)),
		ep("q8", "10.0.0.4", nil, load(8, 0.1)),
		ep("kv80", "10.0.0.5", nil, load(0, 0.8)),
		ep("kv81", "10.0.0.6", nil, load(0, 0.81)),
		ep("kv100", "10.0.0.7", nil, load(0, 1)),
		ep("age200ms", "10.0.0.8", nil, aged(200*time.Millisecond)),
		ep("age201ms", "10.0.0.10", nil, aged(201*time.Millisecond)),
		ep("never-scraped", "10.0.0.11", nil, nil),
		ep("kv-nan", "10.0.0.12", nil, load(0, math.NaN())),
		flagged,
		ep("age290ms-every150ms", "10.0.0.13", nil, scraped(290*time.Millisecond, 150*time.Millisecond)),
		ep("age310ms-every150ms", "10.0.0.14", nil, scraped(310*time.Millisecond, 150*time.Millisecond)),
		ep("age201ms-every100ms", "10.0.0.15", nil, scraped(201*time.Millisecond, 100*time.Millisecond)),
	}
	tests := []struct {
		name   string
		params string
		want   []string
	}{
		{name: "defaults", params: ``, want: []string{"idle", "q5", "kv80", "age200ms", "age290ms-every150ms"}},
		{name: "headroom raises limits, kv capped at 1", params: `{"headroom":0.5}`,
			want: []string{"idle", "q5", "q6", "kv80", "kv81", "kv100", "age200ms", "age290ms-every150ms"}},
		{name: "lower thresholds", params: `{"queueDepthThreshold":1,"kvCacheUtilThreshold":0.5}`, want: []string{"idle", "age200ms", "age290ms-every150ms"}},
		{name: "shorter staleness", params: `{"metricsStalenessThreshold":"100ms"}`, want: []string{"idle", "q5", "kv80", "age290ms-every150ms"}},
		{name: "longer staleness", params: `{"metricsStalenessThreshold":"1s"}`,
			want: []string{"idle", "q5", "kv80", "age200ms", "age201ms", "age290ms-every150ms", "age310ms-every150ms", "age201ms-every100ms"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := UtilizationDetectorFactory("u", []byte(tc.params), nil)
			if err != nil {
				t.Fatal(err)
			}
			got := p.(*UtilizationDetector).Filter(ctx, plugintest.State(1), nil, eps)
			if diff := cmp.Diff(tc.want, names(got)); diff != "" {
				t.Errorf("kept (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUtilizationDetectorFailsOpen(t *testing.T) {
	t.Parallel()
	d, err := NewUtilizationDetector("u", DefaultUtilizationParams())
	if err != nil {
		t.Fatal(err)
	}
	eps := []*endpoint.Endpoint{ep("busy", "10.0.0.1", nil, load(50, 1)), ep("never-scraped", "10.0.0.2", nil, nil)}
	got := d.Filter(ctx, plugintest.State(1), nil, eps)
	if len(got) != 2 || &got[0] != &eps[0] {
		t.Errorf("all saturated: got %v, want the input slice itself", names(got))
	}
}

func TestUtilizationDetectorSaturation(t *testing.T) {
	t.Parallel()
	stale := ep("stale", "10.0.0.9", nil, load(0, 0))
	stale.SetStale(true)
	tests := []struct {
		name string
		eps  []*endpoint.Endpoint
		want float64
	}{
		{name: "empty pool fails closed", want: 1},
		{name: "idle", eps: []*endpoint.Endpoint{ep("a", "10.0.0.1", nil, load(0, 0))}, want: 0},
		{name: "queue dominates", eps: []*endpoint.Endpoint{ep("a", "10.0.0.1", nil, load(10, 0.4))}, want: 2},
		{name: "kv dominates", eps: []*endpoint.Endpoint{ep("a", "10.0.0.1", nil, load(1, 0.6))}, want: 0.75},
		{name: "mean over pool", eps: []*endpoint.Endpoint{
			ep("a", "10.0.0.1", nil, load(0, 0)),
			ep("b", "10.0.0.2", nil, load(5, 0)),
			ep("c", "10.0.0.3", nil, load(0, 0.4)),
			ep("d", "10.0.0.4", nil, load(15, 0)),
		}, want: (0 + 1 + 0.5 + 3) / 4.0},
		{name: "stale and unscraped count as 1", eps: []*endpoint.Endpoint{
			stale, ep("n", "10.0.0.2", nil, nil), ep("busy", "10.0.0.3", nil, load(20, 0)),
		}, want: (1 + 1 + 4) / 3.0},
	}
	d, err := NewUtilizationDetector("u", UtilizationParams{QueueDepthThreshold: 5, KVCacheUtilThreshold: 0.8, MetricsStalenessThreshold: "200ms", Headroom: 5})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := d.Saturation(tc.eps, plugintest.Epoch)
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b float64) bool { return math.Abs(a-b) < 1e-12 })); diff != "" {
				t.Errorf("Saturation (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUtilizationParams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, params, wantErr string
	}{
		{name: "defaults", params: ``},
		{name: "kv 1 allowed", params: `{"kvCacheUtilThreshold":1}`},
		{name: "queue 0", params: `{"queueDepthThreshold":0}`, wantErr: "queueDepthThreshold: must be >= 1, got 0"},
		{name: "queue fractional", params: `{"queueDepthThreshold":2.5}`, wantErr: "parameters:"},
		{name: "kv 0", params: `{"kvCacheUtilThreshold":0}`, wantErr: "kvCacheUtilThreshold: must be in (0, 1], got 0"},
		{name: "kv above 1", params: `{"kvCacheUtilThreshold":1.5}`, wantErr: "kvCacheUtilThreshold: must be in (0, 1], got 1.5"},
		{name: "staleness not a duration", params: `{"metricsStalenessThreshold":"soon"}`, wantErr: "metricsStalenessThreshold:"},
		{name: "staleness number", params: `{"metricsStalenessThreshold":200}`, wantErr: "parameters:"},
		{name: "staleness zero", params: `{"metricsStalenessThreshold":"0s"}`, wantErr: `metricsStalenessThreshold: must be > 0, got "0s"`},
		{name: "staleness negative", params: `{"metricsStalenessThreshold":"-1s"}`, wantErr: "must be > 0"},
		{name: "headroom negative", params: `{"headroom":-0.1}`, wantErr: "headroom: must be >= 0, got -0.1"},
		{name: "unknown field", params: `{"queueDepth":3}`, wantErr: `unknown field "queueDepth"`},
		{name: "all problems reported", params: `{"queueDepthThreshold":-1,"kvCacheUtilThreshold":2,"metricsStalenessThreshold":"x","headroom":-1}`,
			wantErr: "queueDepthThreshold|kvCacheUtilThreshold|metricsStalenessThreshold|headroom"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := UtilizationDetectorFactory("u", []byte(tc.params), nil)
			wantErr(t, err, tc.wantErr)
			if err != nil && p != nil {
				t.Errorf("factory returned plugin %v with error", p)
			}
		})
	}
	if _, err := NewUtilizationDetector("u", UtilizationParams{}); err == nil {
		t.Error("zero params accepted by the constructor")
	}
}

func TestUtilizationConformance(t *testing.T) {
	t.Parallel()
	for _, params := range []string{``, `{"queueDepthThreshold":15,"headroom":0.2}`, `{"metricsStalenessThreshold":"1ms"}`} {
		p, err := UtilizationDetectorFactory("u", []byte(params), nil)
		if err != nil {
			t.Fatal(err)
		}
		plugintest.Filter(t, p.(*UtilizationDetector), plugintest.Request("m", 100))
	}
}

func BenchmarkUtilizationDetector(b *testing.B) {
	d, err := NewUtilizationDetector("u", UtilizationParams{QueueDepthThreshold: 15, KVCacheUtilThreshold: 0.9, MetricsStalenessThreshold: "200ms"})
	if err != nil {
		b.Fatal(err)
	}
	benchFilter(b, d, plugintest.Request("m", 100))
}

func BenchmarkUtilizationSaturation(b *testing.B) {
	d, err := NewUtilizationDetector("u", DefaultUtilizationParams())
	if err != nil {
		b.Fatal(err)
	}
	eps := plugintest.Endpoints(100, 1)
	b.ReportAllocs()
	for b.Loop() {
		d.Saturation(eps, plugintest.Epoch)
	}
}

// TestUtilizationStalenessPolicy: llm-d's stalenessPolicy. saturated counts
// a stale endpoint as 1.0; ignore leaves it out of the mean, and a pool
// with no fresh endpoint reads 0 (it dispatches); an empty pool reads 1
// either way. The stale count is reported under both.
func TestUtilizationStalenessPolicy(t *testing.T) {
	t.Parallel()
	stale := ep("stale", "10.0.0.9", nil, load(0, 0))
	stale.SetStale(true)
	unscraped := ep("n", "10.0.0.2", nil, nil)
	busy := ep("busy", "10.0.0.3", nil, load(10, 0))
	for _, tc := range []struct {
		policy    string
		eps       []*endpoint.Endpoint
		want      float64
		wantStale int
	}{
		{StalenessSaturated, []*endpoint.Endpoint{stale, unscraped, busy}, (1 + 1 + 2) / 3.0, 2},
		{StalenessIgnore, []*endpoint.Endpoint{stale, unscraped, busy}, 2, 2},
		{StalenessIgnore, []*endpoint.Endpoint{stale, unscraped}, 0, 2},
		{StalenessSaturated, []*endpoint.Endpoint{stale, unscraped}, 1, 2},
		{StalenessIgnore, nil, 1, 0},
	} {
		p := DefaultUtilizationParams()
		p.StalenessPolicy = tc.policy
		d, err := NewUtilizationDetector("u", p)
		if err != nil {
			t.Fatal(err)
		}
		stale := d.StaleAmong(tc.eps, plugintest.Epoch)
		if got := d.Saturation(tc.eps, plugintest.Epoch); math.Abs(got-tc.want) > 1e-12 || stale != tc.wantStale {
			t.Errorf("%s over %d endpoints: saturation %v, %d stale; want %v, %d", tc.policy, len(tc.eps), got,
				stale, tc.want, tc.wantStale)
		}
	}
	p := DefaultUtilizationParams()
	p.StalenessPolicy = "fail-open"
	if _, err := NewUtilizationDetector("u", p); err == nil || !strings.Contains(err.Error(), "stalenessPolicy") {
		t.Errorf("an unknown policy was accepted: %v", err)
	}
}

// TestUtilizationDetectorCountsUnscrapedDispatches: requests sent to an
// endpoint after its last scrape count in its queue until the next scrape
// (flow control releasing between two scrapes sees them), unless turned
// off or in upstream-compatible scoring; Saturation does not allocate.
func TestUtilizationDetectorCountsUnscrapedDispatches(t *testing.T) {
	scraped := plugintest.Epoch.Add(-10 * time.Millisecond) // load's scrape time
	eps := []*endpoint.Endpoint{ep("a", "10.0.0.1", nil, load(0, 0)), ep("b", "10.0.0.2", nil, load(0, 0))}
	send := func(d *UtilizationDetector, at time.Time, n int) {
		for range n {
			d.PreRequest(ctx, scheduler.NewState(1, at), nil, routedTo(eps[0]))
		}
	}
	build := func(raw string, h *scheduler.Handle) *UtilizationDetector {
		p, err := UtilizationDetectorFactory("u", json.RawMessage(raw), h)
		if err != nil {
			t.Fatal(err)
		}
		return p.(*UtilizationDetector)
	}
	d := build(``, nil)
	send(d, scraped.Add(-time.Millisecond), 3) // before the scrape: in its queue already
	if got := d.Saturation(eps, plugintest.Epoch); got != 0 {
		t.Errorf("dispatches the scrape covers: saturation %v, want 0", got)
	}
	send(d, scraped.Add(time.Millisecond), 5) // after it: a queue of 5 on a, the threshold
	if got := d.Saturation(eps, plugintest.Epoch); got != 0.5 {
		t.Errorf("five unscraped dispatches to one of two endpoints: saturation %v, want 0.5", got)
	}
	if allocs := testing.AllocsPerRun(50, func() { d.Saturation(eps, plugintest.Epoch) }); allocs != 0 {
		t.Errorf("Saturation allocates %v times per call, want 0", allocs)
	}
	for name, d := range map[string]*UtilizationDetector{
		"off":      build(`{"countUnscrapedDispatches": false}`, nil),
		"upstream": build(``, &scheduler.Handle{UpstreamScoring: true}),
	} {
		send(d, scraped.Add(time.Millisecond), 5)
		if got := d.Saturation(eps, plugintest.Epoch); got != 0 {
			t.Errorf("%s: saturation %v, want 0 (scraped queues alone)", name, got)
		}
	}
}
