// Package pdsim starts simulated model servers, each fronted by a P/D
// decode sidecar on its own 127.0.0.1 port (what "sim --pd-sidecar" runs),
// for tests of disaggregated serving end to end. It is test support, like
// net/http/httptest: import it from tests only.
//
//	servers := pdsim.Start(t, 2, pdsim.Options{})
//	req.Header.Set(pdsidecar.PrefillerHeader, servers[1].HostPort())
//	// POST to servers[0].URL(): prefill on servers[1], decode on servers[0].
package pdsim

import (
	"context"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/pdsidecar"
	"github.com/openepp/openepp/pkg/sim"
)

// Options configure the servers.
type Options struct {
	// Config is every instance's simulator config; Address and Port are
	// replaced (127.0.0.1, a free port), Seed is offset by the instance
	// index, and Frontend is the sidecar. The zero value with no Latency
	// set gets Fast latencies.
	Config sim.Config
	// Sidecar configures every sidecar; Local and Registerer are set per
	// instance (its metrics appear on the instance's metrics page).
	Sidecar pdsidecar.Options
}

// Fast are sub-millisecond latencies, so tests spend their time on HTTP:
// 100µs iterations, 200µs prefill overhead, no per-token prefill cost.
func Fast() sim.Latency {
	return sim.Latency{
		InterTokenLatency: sim.Ptr(100 * time.Microsecond), PrefillOverhead: sim.Ptr(200 * time.Microsecond),
		PrefillTimePerToken: sim.Ptr(time.Duration(0)),
	}
}

// Start runs n instances with sidecars and closes them when the test ends.
// Any instance can decode (with a prefiller named in
// pdsidecar.PrefillerHeader) and prefill (for another's sidecar).
func Start(t testing.TB, n int, o Options) []*sim.Instance {
	t.Helper()
	if o.Config.Latency == (sim.Latency{}) {
		o.Config.Latency = Fast()
	}
	out := make([]*sim.Instance, 0, n)
	for k := range n {
		cfg := o.Config
		cfg.Address, cfg.Port, cfg.Seed = "127.0.0.1", 0, o.Config.Seed+uint64(k)
		cfg.Frontend = o.Sidecar.Wrap
		inst, err := sim.Start(context.Background(), cfg)
		if err != nil {
			t.Fatalf("start instance %d: %v", k, err)
		}
		t.Cleanup(func() {
			if err := inst.Close(); err != nil {
				t.Errorf("close instance %d: %v", k, err)
			}
		})
		out = append(out, inst)
	}
	return out
}
