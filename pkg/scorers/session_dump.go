package scorers

import (
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// SessionAffinityState is what SessionAffinity shows at
// /debug/plugins/state. Session IDs are kept only as seeded hashes and are
// never shown. JSON fields:
//
//   - strategy: as configured; with encoded_endpoint_header the scorer
//     keeps no state (the client holds it) and the counts below are 0;
//   - sessions: session_id bindings held;
//   - maxSessions, evictionTtlSeconds: the bounds as configured;
//   - full: the table is full, so each new session replaces the least
//     recently used binding;
//   - sessionsByEndpoint: per endpoint, by name (by address for one not in
//     the pool), the sessions bound to it; at most scheduler.DumpLimit
//     endpoints, the most bound first. It is read in batches, so under
//     churn it may be off by the sessions bound or expired meanwhile;
//   - moreEndpoints: endpoints left out of sessionsByEndpoint.
type SessionAffinityState struct {
	Strategy           string         `json:"strategy"`
	Sessions           int            `json:"sessions"`
	MaxSessions        int            `json:"maxSessions"`
	EvictionTTLSeconds float64        `json:"evictionTtlSeconds"`
	Full               bool           `json:"full"`
	SessionsByEndpoint map[string]int `json:"sessionsByEndpoint"`
	MoreEndpoints      int            `json:"moreEndpoints"`
}

// dumpBatch bounds the bindings counted under one hold of the read lock, so
// a dump of a full table never holds binds up for long.
const dumpBatch = 4096

// DumpState implements scheduler.StateDumper; it returns a
// SessionAffinityState.
func (s *SessionAffinity) DumpState() any {
	if s.producer != nil { // its sessions are the producer's
		return s.producer.DumpState()
	}
	st := SessionAffinityState{
		Strategy: StrategyEncodedEndpoint, MaxSessions: s.maxSessions, EvictionTTLSeconds: s.ttl.Seconds(),
		SessionsByEndpoint: map[string]int{},
	}
	if !s.byID {
		return st
	}
	st.Strategy = StrategySessionID
	b := s.book
	b.mu.RLock()
	st.Sessions, st.Full = b.table.len(), b.full
	b.mu.RUnlock()
	byAddr := map[string]int{}
	for from, done := 0, false; !done; from += dumpBatch {
		b.mu.RLock()
		done = b.table.count(from, from+dumpBatch, byAddr)
		b.mu.RUnlock()
	}
	var pool func() []*endpoint.Endpoint
	if s.handle != nil {
		pool = s.handle.Endpoints
	}
	names := scheduler.NamesOf(pool)
	byName := make(map[string]int, len(byAddr))
	for hostPort, n := range byAddr {
		byName[names.Name(hostPort)] += n
	}
	st.SessionsByEndpoint, st.MoreEndpoints = scheduler.TopCounts(byName)
	return st
}
