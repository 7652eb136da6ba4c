package fleet

import (
	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/kvevents"
	"github.com/openepp/openepp/pkg/precise"
	"github.com/openepp/openepp/pkg/scheduler"
	simserver "github.com/openepp/openepp/pkg/sim"
)

// kvHub carries the simulated servers' KV events to every
// precise-prefix-cache-producer of every EPP replica, as each replica of a
// live deployment subscribes to the same streams. Events arrive at the
// instant the engine step caches or evicts the blocks (over ZeroMQ they
// take well under a millisecond, far less than a scrape interval).
type kvHub struct {
	producers []*precise.Producer
}

// join wires a built config into the hub: its precise producers receive
// the events, and its token producers tokenize in process, as the
// simulated servers do, instead of calling a server.
func (h *kvHub) join(built *config.Built, tokens func(*scheduler.Request) ([]uint32, bool)) {
	ps := config.Instances[*precise.Producer](built)
	if len(ps) == 0 {
		return
	}
	h.producers = append(h.producers, ps...)
	for _, tp := range config.Instances[*precise.TokenProducer](built) {
		tp.SetLocal(tokens)
	}
}

// listen makes every server's engine report to the hub; only when some
// producer listens, since copying every cached block costs time.
func (h *kvHub) listen(s *sim) {
	if len(h.producers) == 0 {
		return
	}
	for i := range s.servers {
		hostPort := s.servers[i].ep.HostPort
		s.servers[i].eng.SetKVEventListener(simserver.KVEventBatches(func(b *kvevents.Batch) {
			for _, p := range h.producers {
				p.Ingest(hostPort, b)
			}
		}))
	}
}
