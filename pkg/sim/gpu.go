package sim

import (
	"strings"
	"sync"
	"time"
)

const (
	// gpuWindow is the wall time at least that DCGM_FI_DEV_GPU_UTIL
	// averages over; DCGM refreshes its fields about once a second.
	gpuWindow = time.Second
	// gpuSamples bounds the busy-time readings a gpuMeter keeps, taken at
	// least gpuWindow/4 apart, so with frequent scrapes one is always a
	// window old.
	gpuSamples = 8
)

// busyReading is the engine's summed iteration time (engine.Metrics.
// BusyTime) read at a driver time.
type busyReading struct{ at, busy time.Duration }

// gpuMeter turns the engine's busy-time counter into what DCGM reports
// as GPU utilization: the share of wall time the engine was busy since
// the newest earlier reading at least gpuWindow old, or since the oldest
// one kept (the previous scrape, when scrapes are further apart; the
// driver's start before that).
type gpuMeter struct {
	mu       sync.Mutex
	readings []busyReading // oldest first; starts with the driver's start
}

func newGPUMeter() *gpuMeter { return &gpuMeter{readings: []busyReading{{}}} }

// utilization is the busy fraction, 0..1, up to driver time at, busy being
// the counter then; it records the reading. An iteration counts whole as
// it starts, so a window can be ahead by one iteration: clamped to 1.
func (g *gpuMeter) utilization(at, busy time.Duration) float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	ref := g.readings[0]
	for _, r := range g.readings {
		if at-r.at < gpuWindow {
			break
		}
		ref = r
	}
	if last := g.readings[len(g.readings)-1]; at-last.at >= gpuWindow/4 {
		g.readings = append(g.readings, busyReading{at: at, busy: busy})
		if len(g.readings) > gpuSamples {
			g.readings = g.readings[1:]
		}
	}
	span := at - ref.at
	if span <= 0 {
		return 0
	}
	return min(max(float64(busy-ref.busy)/float64(span), 0), 1)
}

// collectGPU exports the DCGM Exporter's GPU utilization gauge under every
// metrics engine (it is DCGM's, not the model server's): one GPU, in
// percent, without a pod label, as an exporter in the server's pod (or one
// without Kubernetes mapping) reports it.
func collectGPU(e *emitter, util float64, engineID string) {
	e.gauge("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", util*100,
		"gpu", "0", "UUID", "GPU-"+strings.TrimPrefix(engineID, "openepp-sim-"), "device", "nvidia0",
		"modelName", "OpenEPP simulated GPU")
}
