package sim

import (
	"math"
	"net/http"
	"testing"
	"time"
)

// TestGPUMeter: the busy share is measured since the newest reading at
// least a second old, or the oldest kept, and clamped to [0, 1].
func TestGPUMeter(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	type scrape struct {
		at, busy time.Duration
		want     float64
	}
	tests := []struct {
		name    string
		scrapes []scrape
	}{
		{name: "first scrape: since the start", scrapes: []scrape{{at: 400 * ms, busy: 100 * ms, want: 0.25}}},
		{name: "frequent scrapes: the last second or so", scrapes: []scrape{
			{at: 1000 * ms, busy: 0, want: 0},
			{at: 1300 * ms, busy: 0, want: 0},
			{at: 1600 * ms, busy: 0, want: 0},
			{at: 1900 * ms, busy: 0, want: 0},
			{at: 2200 * ms, busy: 300 * ms, want: 300.0 / 1200}, // since the 1000ms reading
			{at: 2500 * ms, busy: 600 * ms, want: 600.0 / 1200}, // since 1300ms
			{at: 2800 * ms, busy: 900 * ms, want: 900.0 / 1200}, // since 1600ms
		}},
		{name: "rare scrapes: since the previous one", scrapes: []scrape{
			{at: 5 * time.Second, busy: time.Second, want: 0.2},
			{at: 10 * time.Second, busy: 6 * time.Second, want: 1},
			{at: 15 * time.Second, busy: 6 * time.Second, want: 0},
		}},
		{name: "an iteration counted ahead is clamped", scrapes: []scrape{{at: 100 * ms, busy: 150 * ms, want: 1}}},
		{name: "no time passed", scrapes: []scrape{{at: 0, busy: 0, want: 0}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := newGPUMeter()
			for i, s := range tc.scrapes {
				if got := g.utilization(s.at, s.busy); math.Abs(got-s.want) > 1e-9 {
					t.Errorf("scrape %d at %s: utilization %v, want %v", i, s.at, got, s.want)
				}
			}
			if len(g.readings) > gpuSamples {
				t.Errorf("%d readings kept, at most %d", len(g.readings), gpuSamples)
			}
		})
	}
}

// TestGPUUtilizationOnEveryPage: DCGM's gauge is on every metrics
// engine's page, one GPU without a pod label, in percent; it rises while
// the engine works.
func TestGPUUtilizationOnEveryPage(t *testing.T) {
	t.Parallel()
	for _, tc := range pageCases {
		t.Run(tc.engine, func(t *testing.T) {
			t.Parallel()
			cfg := quick()
			cfg.MetricsEngine = tc.engine
			cfg.Capacity.MaxNumSeqs = 1
			cfg.Latency.InterTokenLatency = Ptr(20 * time.Millisecond)
			inst := start(t, cfg)
			c := client(t)
			_, text := scrapeText(t, c, inst)
			fams := parsePage(t, text)
			if idle := value(t, fams, "DCGM_FI_DEV_GPU_UTIL", map[string]string{"gpu": "0"}); idle != 0 {
				t.Errorf("idle: %v", idle)
			}
			for _, l := range fams["DCGM_FI_DEV_GPU_UTIL"].GetMetric()[0].GetLabel() {
				if l.GetName() == "pod" {
					t.Errorf("pod label %q", l.GetValue())
				}
			}
			stop := loadUp(t, inst, c, false)
			defer stop()
			waitFor(t, func() bool {
				time.Sleep(50 * time.Millisecond)
				status, text := scrapeText(t, c, inst)
				return status == http.StatusOK && value(t, parsePage(t, text), "DCGM_FI_DEV_GPU_UTIL", nil) > 50
			})
		})
	}
}
