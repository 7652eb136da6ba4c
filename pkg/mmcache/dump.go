package mmcache

import (
	"cmp"
	"strings"

	"github.com/openepp/openepp/pkg/scheduler"
)

// ProducerState is what Producer shows at /debug/plugins/state: how much
// each endpoint's LRU holds, never the hashes. JSON fields:
//
//   - cacheSizeInMBPerServer: as configured;
//   - capacityItemsPerServer: the items that budget buys, at
//     bytesPerItem (the estimated memory of one remembered item);
//   - items: (endpoint, item) pairs held;
//   - endpointCount: endpoints with an LRU;
//   - endpoints: per endpoint, keyed by name (by address when it has left
//     the pool and the next purge has not forgotten it yet),
//     {items, capacityItems} (capacityItems as of its last record); at most
//     scheduler.DumpLimit endpoints, the ones with most items;
//   - moreEndpoints: endpoints left out of endpoints.
type ProducerState struct {
	CacheSizeInMBPerServer int                    `json:"cacheSizeInMBPerServer"`
	CapacityItemsPerServer int                    `json:"capacityItemsPerServer"`
	BytesPerItem           int                    `json:"bytesPerItem"`
	Items                  int                    `json:"items"`
	EndpointCount          int                    `json:"endpointCount"`
	Endpoints              map[string]EndpointLRU `json:"endpoints"`
	MoreEndpoints          int                    `json:"moreEndpoints"`
}

// EndpointLRU is one endpoint's LRU.
type EndpointLRU struct {
	Items         int `json:"items"`
	CapacityItems int `json:"capacityItems"`
}

// DumpState implements scheduler.StateDumper; it returns a ProducerState.
func (p *Producer) DumpState() any {
	usage := p.store.usage()
	st := ProducerState{
		CacheSizeInMBPerServer: p.params.CacheSizeInMBPerServer, CapacityItemsPerServer: p.capacity,
		BytesPerItem: entryBytes, EndpointCount: len(usage),
	}
	names := scheduler.NamesOf(p.endpoints)
	for i := range usage {
		st.Items += usage[i].items
		usage[i].key = names.Name(usage[i].key)
	}
	kept, more := scheduler.Top(usage, func(a, b endpointUsage) int {
		return cmp.Or(cmp.Compare(b.items, a.items), strings.Compare(a.key, b.key))
	})
	st.Endpoints = make(map[string]EndpointLRU, len(kept))
	for _, u := range kept {
		st.Endpoints[u.key] = EndpointLRU{Items: u.items, CapacityItems: u.capacity}
	}
	st.MoreEndpoints = more
	return st
}
