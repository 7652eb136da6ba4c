package prefix

import (
	"cmp"
	"strings"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

var _ scheduler.StateDumper = (*Producer)(nil)

// ProducerState is what Producer shows at /debug/plugins/state: the size of
// its index, never the hashes. JSON fields:
//
//   - autoTune, blockSizeTokens, maxPrefixBlocksToMatch,
//     maxPrefixTokensToMatch, lruCapacityPerServer: the parameters as
//     configured;
//   - blockSizeTokensInUse: the block size auto-tuning picks for the whole
//     current pool (a request's candidates may pick another);
//   - shards: lock domains; each endpoint's capacity is split across them;
//   - entries: (endpoint, block) pairs held;
//   - endpointCount: endpoints the index tracks;
//   - endpoints: per endpoint, keyed by name (by address when the endpoint
//     has left the pool and the next purge has not forgotten it yet),
//     {blocks, capacityBlocks}: the blocks it is believed to hold and the
//     most it may (its last insert's capacity, rounded up to a multiple of
//     shards); at most scheduler.DumpLimit endpoints, the ones with most
//     blocks;
//   - moreEndpoints: tracked endpoints left out of endpoints.
type ProducerState struct {
	AutoTune               bool                       `json:"autoTune"`
	BlockSizeTokens        int                        `json:"blockSizeTokens"`
	BlockSizeTokensInUse   int                        `json:"blockSizeTokensInUse"`
	MaxPrefixBlocksToMatch int                        `json:"maxPrefixBlocksToMatch"`
	MaxPrefixTokensToMatch int                        `json:"maxPrefixTokensToMatch"`
	LRUCapacityPerServer   int                        `json:"lruCapacityPerServer"`
	Shards                 int                        `json:"shards"`
	Entries                int                        `json:"entries"`
	EndpointCount          int                        `json:"endpointCount"`
	Endpoints              map[string]IndexedEndpoint `json:"endpoints"`
	MoreEndpoints          int                        `json:"moreEndpoints"`
}

// IndexedEndpoint is one endpoint's share of the index.
type IndexedEndpoint struct {
	Blocks         int `json:"blocks"`
	CapacityBlocks int `json:"capacityBlocks"`
}

// DumpState implements scheduler.StateDumper; it returns a ProducerState.
func (p *Producer) DumpState() any {
	var pool []*endpoint.Endpoint
	if p.endpoints != nil {
		pool = p.endpoints()
	}
	usage, entries := p.index.usage()
	st := ProducerState{
		AutoTune: p.params.AutoTune, BlockSizeTokens: p.params.BlockSizeTokens, BlockSizeTokensInUse: p.blockSizeTokens(pool),
		MaxPrefixBlocksToMatch: p.params.MaxPrefixBlocksToMatch, MaxPrefixTokensToMatch: p.params.MaxPrefixTokensToMatch,
		LRUCapacityPerServer: p.params.LRUCapacityPerServer, Shards: len(p.index.shards),
		Entries: entries, EndpointCount: len(usage),
		Endpoints: make(map[string]IndexedEndpoint, min(len(usage), scheduler.DumpLimit)),
	}
	names := scheduler.NamesOf(p.endpoints)
	for i := range usage {
		if names == nil {
			usage[i].key = usage[i].e.Name // no pool to tell departed endpoints by
		} else {
			usage[i].key = names.Name(usage[i].e.HostPort)
		}
	}
	kept, more := scheduler.Top(usage, func(a, b slotUsage) int {
		return cmp.Or(cmp.Compare(b.blocks, a.blocks), strings.Compare(a.key, b.key))
	})
	for _, u := range kept {
		st.Endpoints[u.key] = IndexedEndpoint{Blocks: u.blocks, CapacityBlocks: u.capacity}
	}
	st.MoreEndpoints = more
	return st
}

// slotUsage is one tracked endpoint's share of the index.
type slotUsage struct {
	e                *endpoint.Endpoint
	key              string
	blocks, capacity int
}

// usage returns every tracked endpoint's share and the number of entries.
// Like Occupancy it holds each shard's read lock once, only to read a few
// counters per endpoint; its buffers are allocated before.
func (ix *Index) usage() ([]slotUsage, int) {
	snap := ix.slots.Load()
	blocks := make([]int, len(snap.bySlot))
	caps := make([]int32, len(snap.bySlot))
	entries := 0
	for _, s := range ix.shards {
		s.mu.RLock()
		entries += s.n
		for slot, l := range s.lists[:min(len(s.lists), len(blocks))] {
			blocks[slot] += int(l.n)
			caps[slot] = max(caps[slot], l.cap)
		}
		s.mu.RUnlock()
	}
	out := make([]slotUsage, 0, len(snap.byAddr))
	for slot, e := range snap.bySlot {
		if e != nil {
			out = append(out, slotUsage{e: e, blocks: blocks[slot], capacity: int(caps[slot]) * len(ix.shards)})
		}
	}
	return out, entries
}
