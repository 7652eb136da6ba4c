package inflight

import (
	"cmp"
	"strings"

	"github.com/openepp/openepp/pkg/scheduler"
)

// State is what a Counter shows at /debug/plugins/state. JSON fields:
//
//   - requests, tokens: the totals in flight over all endpoints;
//   - tokensTracked: whether the plugin weighs requests in tokens (tokens
//     are always 0 when it does not, as for active-request-scorer);
//   - requestTimeoutSeconds: after this long a request whose completion was
//     never seen stops counting;
//   - endpoints: per busy endpoint, keyed by name (by address when the
//     endpoint has left the pool and the sweep has not forgotten it yet),
//     {requests, tokens}; at most scheduler.DumpLimit endpoints, the ones
//     with the most requests;
//   - moreEndpoints: busy endpoints left out of endpoints.
type State struct {
	Requests              int                     `json:"requests"`
	Tokens                int                     `json:"tokens"`
	TokensTracked         bool                    `json:"tokensTracked"`
	RequestTimeoutSeconds float64                 `json:"requestTimeoutSeconds"`
	Endpoints             map[string]EndpointLoad `json:"endpoints"`
	MoreEndpoints         int                     `json:"moreEndpoints"`
}

// EndpointLoad is what one endpoint has in flight.
type EndpointLoad struct {
	Requests int `json:"requests"`
	Tokens   int `json:"tokens"`
}

// busy is one endpoint's load as copied out of the books.
type busy struct {
	key string
	load
}

// Dump copies the books (briefly, under the read lock) and summarises them.
func (c *Counter) Dump() State {
	var pool scheduler.EndpointNames
	if c.handle != nil {
		pool = scheduler.NamesOf(c.handle.Endpoints)
	}
	loads := c.tracker.loads()
	st := State{
		TokensTracked:         c.estimate != nil,
		RequestTimeoutSeconds: c.tracker.TTL().Seconds(),
		Endpoints:             make(map[string]EndpointLoad, min(len(loads), scheduler.DumpLimit)),
	}
	for i := range loads {
		loads[i].key = pool.Name(loads[i].key)
		st.Requests += loads[i].requests
		st.Tokens += loads[i].tokens
	}
	kept, more := scheduler.Top(loads, func(a, b busy) int {
		return cmp.Or(cmp.Compare(b.requests, a.requests), cmp.Compare(b.tokens, a.tokens), strings.Compare(a.key, b.key))
	})
	for _, b := range kept {
		st.Endpoints[b.key] = EndpointLoad{Requests: b.requests, Tokens: b.tokens}
	}
	st.MoreEndpoints = more
	return st
}

// DumpState implements scheduler.StateDumper for the plugins embedding a
// Counter; it returns a State.
func (c *Counter) DumpState() any { return c.Dump() }

// loads copies every busy endpoint's load. The copy is sized outside the
// lock, so the lock is held only to read.
func (t *Tracker) loads() []busy {
	t.mu.RLock()
	n := len(t.load)
	t.mu.RUnlock()
	out := make([]busy, 0, n+n/4+1)
	t.mu.RLock()
	defer t.mu.RUnlock()
	for hostPort, l := range t.load {
		out = append(out, busy{key: hostPort, load: l})
	}
	return out
}
