package plugins

import (
	"testing"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// BenchmarkPluginCost is what each built-in plugin that builds without
// parameters costs per decision at 100 endpoints and a 1 KiB prompt, as a
// multiple of plugintest's reference scorer: the yardstick for a plugin of
// one's own measured with plugintest.Cost. Each plugin runs alone on
// endpoints with fresh metrics: a scorer or filter that reads a producer's
// output measures its path without it, and the prefix producers match
// against an empty index (BenchmarkSchedule is the warm decision). Left
// out: plugins that need parameters or other plugins to build, and
// batching producers, whose Produce waits for their window by design.
func BenchmarkPluginCost(b *testing.B) {
	eps := plugintest.Endpoints(100, 1)
	h := &scheduler.Handle{Log: logr.Discard(), Clock: scheduler.RealClock{}, Endpoints: func() []*endpoint.Endpoint { return eps }}
	req := plugintest.Request("lora-1", 1024)
	for _, r := range Registrations() {
		p, err := r.Factory(r.Type, nil, h)
		if _, batches := p.(scheduler.Batcher); err != nil || batches || !plugintest.Measurable(p) {
			continue
		}
		b.Run(r.Type, func(b *testing.B) { plugintest.Cost(b, p, req, 100) })
	}
}
