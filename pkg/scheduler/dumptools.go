package scheduler

import (
	"cmp"
	"slices"
	"strings"

	"github.com/openepp/openepp/pkg/endpoint"
)

// DumpLimit bounds every list and per-endpoint map in a dumped state: the
// entries beyond it are only counted, so a dump costs about the same
// however large a plugin's books grow.
const DumpLimit = 100

// Top sorts items by cmp and keeps the first DumpLimit of them; it returns
// those and how many it left out. It reorders items.
func Top[T any](items []T, cmp func(a, b T) int) (kept []T, more int) {
	slices.SortFunc(items, cmp)
	if len(items) <= DumpLimit {
		return items, 0
	}
	return items[:DumpLimit], len(items) - DumpLimit
}

// TopCounts keeps the DumpLimit largest of counts (ties by key) and says
// how many it left out.
func TopCounts(counts map[string]int) (kept map[string]int, more int) {
	type kv struct {
		key string
		n   int
	}
	all := make([]kv, 0, len(counts))
	for k, n := range counts {
		all = append(all, kv{k, n})
	}
	top, more := Top(all, func(a, b kv) int { return cmp.Or(cmp.Compare(b.n, a.n), strings.Compare(a.key, b.key)) })
	kept = make(map[string]int, len(top))
	for _, c := range top {
		kept[c.key] = c.n
	}
	return kept, more
}

// EndpointNames maps addresses (Endpoint.HostPort, the key most plugins'
// books use because the proxy reports it) to endpoint names, the key dumps
// use because an operator knows endpoints by name.
type EndpointNames map[string]string

// NamesOf indexes the pool that pool returns; pool may be nil (no names are
// known then).
func NamesOf(pool func() []*endpoint.Endpoint) EndpointNames {
	if pool == nil {
		return nil
	}
	eps := pool()
	names := make(EndpointNames, len(eps))
	for _, e := range eps {
		names[e.HostPort] = e.Name
	}
	return names
}

// Name returns the name of the pool's endpoint at hostPort, or hostPort
// itself when the pool has none there (an endpoint that left and that the
// plugin has not forgotten yet, or no pool known).
func (n EndpointNames) Name(hostPort string) string {
	if name, ok := n[hostPort]; ok && name != "" {
		return name
	}
	return hostPort
}
