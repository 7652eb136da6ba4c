package metrics

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/fetchfail"
	"github.com/openepp/openepp/pkg/sim"
)

// TestScrapeSimulators scrapes a real simulator per engine while it serves
// long requests (2 running, 1 waiting) and checks the scraped snapshot
// against the engine's own state, through each engine's names and path.
func TestScrapeSimulators(t *testing.T) {
	t.Parallel()
	for _, engineName := range sim.MetricsEngines() {
		t.Run(engineName, func(t *testing.T) {
			t.Parallel()
			inst := startSim(t, engineName)
			st := newStoreWith(specFor(t, "sim", inst.HostPort(), map[string]string{EngineLabelGIE: engineName}))
			s, err := New(st, Options{Interval: 20 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			startScraper(t, s)
			loadSim(t, inst, 3)
			ep := st.Snapshot()[0]
			eventually(t, 5*time.Second, "2 running and 1 waiting scraped", func() bool {
				m := ep.Metrics()
				return m.RunningRequestsSize == 2 && m.WaitingQueueSize == 1 && m.KVCacheUsagePercent > 0
			})
			em := inst.EngineMetrics()
			want := endpoint.Metrics{
				WaitingQueueSize: 1, RunningRequestsSize: 2, CacheBlockSize: em.BlockSize, CacheNumBlocks: em.NumBlocks,
				ScrapeInterval: 20 * time.Millisecond,
			}
			got := *ep.Metrics()
			if got.KVCacheUsagePercent <= 0 || got.KVCacheUsagePercent > 1 {
				t.Errorf("KVCacheUsagePercent = %v, want in (0, 1]", got.KVCacheUsagePercent)
			}
			got.KVCacheUsagePercent, got.UpdateTime = 0, time.Time{}
			if engineName == sim.EngineVLLM {
				// The simulator's adapters are loaded but idle here.
				want.MaxActiveModels = em.MaxLoRAs
				want.ActiveModels, want.WaitingModels = map[string]int{}, map[string]int{}
				// It reports residency (nothing resident yet) and its base model.
				want.LoRAResidency, want.BaseModel = map[string]endpoint.LoRAResidence{}, "sim-model"
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("scraped metrics mismatch (-want +got):\n%s", diff)
			}
			if ep.Stale() || metricValue(t, s.tel.scrapes) < 1 {
				t.Errorf("stale=%v scrapes=%v, want fresh and scraped", ep.Stale(), metricValue(t, s.tel.scrapes))
			}
		})
	}
}

// TestSimulatorFaults drives the simulator's own fault knobs and checks the
// endpoint goes stale and recovers.
func TestSimulatorFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		faults sim.Faults
		reason string
	}{
		{name: "hang", faults: sim.Faults{MetricsHang: true}, reason: fetchfail.Timeout},
		{name: "503", faults: sim.Faults{MetricsStatus: http.StatusServiceUnavailable}, reason: fetchfail.Status},
		{name: "garbage", faults: sim.Faults{MetricsGarbage: true}, reason: fetchfail.Parse},
		{name: "refused", faults: sim.Faults{RefuseConnections: true, RefuseFor: 800 * time.Millisecond}, reason: fetchfail.Refused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			inst := startSim(t, sim.EngineVLLM)
			st := newStoreWith(specFor(t, "sim", inst.HostPort(), nil))
			rec := &recorder{}
			s, err := New(st, Options{Interval: faultInterval, Timeout: faultTimeout, StalenessThreshold: faultStaleness, Log: rec.logger()})
			if err != nil {
				t.Fatal(err)
			}
			startScraper(t, s)
			ep := st.Snapshot()[0]
			eventually(t, 3*time.Second, "fresh", func() bool { return !ep.Stale() && !ep.Metrics().UpdateTime.IsZero() })
			if err := inst.SetFaults(tc.faults); err != nil {
				t.Fatal(err)
			}
			eventually(t, 3*time.Second, "stale", ep.Stale)
			failing := rec.find("metrics scrape failing")
			// A refusing server also drops the kept-alive connection, so the
			// first failure may be a cut-off response instead of a refused
			// dial: an EOF before the headers (connection) or in the body
			// (read).
			ok := len(failing) == 1
			if ok {
				r := failing[0].KV["reason"]
				ok = r == tc.reason || tc.faults.RefuseConnections && (r == fetchfail.Read || r == fetchfail.Connect)
			}
			if !ok {
				t.Fatalf("failing logs = %+v, want one with reason %q", failing, tc.reason)
			}
			if !tc.faults.RefuseConnections {
				if err := inst.SetFaults(sim.Faults{}); err != nil {
					t.Fatal(err)
				}
			}
			eventually(t, 5*time.Second, "fresh again", func() bool { return !ep.Stale() })
			eventually(t, time.Second, "recovery logged", func() bool { return rec.count("metrics scrape recovered", "") == 1 })
		})
	}
}

func startSim(t *testing.T, engineName string) *sim.Instance {
	t.Helper()
	inst, err := sim.Start(context.Background(), sim.Config{
		MetricsEngine: engineName,
		LoRAs:         []string{"sql-lora"},
		Capacity:      sim.Capacity{MaxNumSeqs: 2, KVCacheBlocks: 256, BlockSize: 16, MaxLoRAs: 2},
		Latency:       sim.Latency{InterTokenLatency: sim.Ptr(20 * time.Millisecond), TimeToFirstToken: sim.Ptr(time.Millisecond)},
	})
	if err != nil {
		t.Fatalf("start simulator: %v", err)
	}
	t.Cleanup(func() { _ = inst.Close() })
	return inst
}

// loadSim sends n long completions that run until the test ends.
func loadSim(t *testing.T, inst *sim.Instance, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	body := fmt.Sprintf(`{"model":%q,"prompt":"tell me a long story about metrics","max_tokens":1000}`, inst.Model())
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, inst.URL()+"/v1/completions", strings.NewReader(body))
			if err != nil {
				return
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return // cancelled at the end of the test
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}()
	}
}
