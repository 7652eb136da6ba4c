package dcgm

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/sim"
)

// TestSimulatorGPUUtilization runs the real pipeline against a simulated
// model server: the source polls the simulator's metrics page, the
// extractor publishes DCGM_FI_DEV_GPU_UTIL, near 0 while the server idles
// and near 1 once it has been busy for a second.
func TestSimulatorGPUUtilization(t *testing.T) {
	t.Parallel()
	for _, engine := range sim.MetricsEngines() {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			cfg := sim.Config{MetricsEngine: engine}
			cfg.Capacity.MaxNumSeqs = 1
			cfg.Latency.InterTokenLatency = sim.Ptr(10 * time.Millisecond)
			inst, err := sim.Start(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = inst.Close() })
			ep := endpoint.New(endpoint.Spec{Name: "sim", Address: "127.0.0.1", Port: inst.Port()})
			s := newSource(t, `{"port": `+strconv.Itoa(inst.Port())+`, "path": "`+inst.MetricsPath()+`"}`, ep)
			r := newRounds(s)
			r.run()
			idle, ok := utilOf(ep)
			if !ok || idle > 0.1 {
				t.Fatalf("idle simulator: utilization %v (present %v), want about 0", idle, ok)
			}

			// One long streaming request keeps the engine iterating.
			ctx, cancel := context.WithCancel(context.Background())
			tr := &http.Transport{}
			done := make(chan struct{})
			go func() {
				defer close(done)
				body := `{"model":"` + inst.Model() + `","prompt":"a b c","max_tokens":2000,"stream":true}`
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, inst.URL()+"/v1/completions", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				if resp, err := tr.RoundTrip(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
			defer func() {
				cancel()
				<-done
				tr.CloseIdleConnections()
			}()
			deadline := time.Now().Add(10 * time.Second)
			for {
				time.Sleep(100 * time.Millisecond)
				r.run()
				if busy, _ := utilOf(ep); busy > 0.5 {
					return
				}
				if time.Now().After(deadline) {
					v, ok := utilOf(ep)
					t.Fatalf("under load: utilization %v (present %v) after 10s, want > 0.5", v, ok)
				}
			}
		})
	}
}
