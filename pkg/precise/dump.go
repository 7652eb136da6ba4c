package precise

import (
	"cmp"
	"strings"
	"time"

	"github.com/openepp/openepp/pkg/scheduler"
)

var _ scheduler.StateDumper = (*Producer)(nil)

// ProducerState is what Producer shows at /debug/plugins/state: whether
// events arrive and how much of each server the index knows, never the
// keys. JSON fields:
//
//   - mode: "bind" (servers publish to eventsAddress) or "discoverPods";
//   - eventsAddress: the address bound for events, "" until bound (bind
//     mode);
//   - subscriptions: event subscriptions open now;
//   - blocks: distinct blocks indexed; speculativeEntries: speculative
//     (server, block) entries not yet expired;
//   - blockSizeTokens: the engine block size the servers last reported
//     (tokenProcessorConfig.blockSize until one does);
//   - endpoints: per server the events named (by endpoint name; by
//     address once it left the pool), {blocks, blockSizeTokens,
//     secondsSinceEvent}; at most scheduler.DumpLimit, most blocks first;
//   - moreEndpoints: servers left out of endpoints.
type ProducerState struct {
	Mode               string                   `json:"mode"`
	EventsAddress      string                   `json:"eventsAddress"`
	Subscriptions      int64                    `json:"subscriptions"`
	Blocks             int64                    `json:"blocks"`
	SpeculativeEntries int64                    `json:"speculativeEntries"`
	BlockSizeTokens    int                      `json:"blockSizeTokens"`
	Endpoints          map[string]IndexedServer `json:"endpoints"`
	MoreEndpoints      int                      `json:"moreEndpoints"`
}

// IndexedServer is one server's share of the index.
type IndexedServer struct {
	Blocks            int64   `json:"blocks"`
	BlockSizeTokens   int64   `json:"blockSizeTokens"`
	SecondsSinceEvent float64 `json:"secondsSinceEvent"`
}

// DumpState implements scheduler.StateDumper; it returns a ProducerState.
func (p *Producer) DumpState() any {
	st := ProducerState{
		Mode: "bind", EventsAddress: p.EventsAddr(), Subscriptions: p.openSubscriptions.Load(),
		Blocks: p.index.Keys(), SpeculativeEntries: p.index.speculative.Load(),
		BlockSizeTokens: p.index.BlockSize(nil, p.params.TokenProcessorConfig.BlockSize),
	}
	if p.params.KVEventsConfig.DiscoverPods {
		st.Mode = "discoverPods"
	}
	type row struct {
		key string
		s   IndexedServer
	}
	names := scheduler.NamesOf(p.endpoints)
	now := time.Now()
	var rows []row
	p.index.mu.RLock()
	for hp, s := range p.index.servers {
		r := row{key: names.Name(hp), s: IndexedServer{Blocks: s.blocks.Load(), BlockSizeTokens: s.blockSize.Load()}}
		if t := s.lastEvent.Load(); t != 0 {
			r.s.SecondsSinceEvent = now.Sub(time.Unix(0, t)).Seconds()
		}
		rows = append(rows, r)
	}
	p.index.mu.RUnlock()
	kept, more := scheduler.Top(rows, func(a, b row) int {
		return cmp.Or(cmp.Compare(b.s.Blocks, a.s.Blocks), strings.Compare(a.key, b.key))
	})
	st.Endpoints = make(map[string]IndexedServer, len(kept))
	for _, r := range kept {
		st.Endpoints[r.key] = r.s
	}
	st.MoreEndpoints = more
	return st
}
