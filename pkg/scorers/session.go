package scorers

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"hash/maphash"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// SessionAffinityType is the type name of SessionAffinity.
const SessionAffinityType = "session-affinity-scorer"

// The session affinity strategies.
const (
	// StrategyEncodedEndpoint keeps no server state: the client echoes back
	// a token naming the endpoint that served its previous request.
	StrategyEncodedEndpoint = "encoded_endpoint_header"
	// StrategySessionID binds a client-chosen session ID to an endpoint in
	// a server-side map with an idle TTL.
	StrategySessionID = "session_id"
)

// SessionAffinity keeps the requests of one session on the endpoint that
// served the session before, where its conversation prefix is cached.
//
// Inputs: request headers and the endpoint picked for earlier requests of
// the session. With encoded_endpoint_header (default) the request header
// (x-session-token) holds base64("namespace/name") of that endpoint; a
// token holding "ip:port" is matched too. In ResponseHeaders the scorer sets
// the same header on the response to the token of the endpoint that served
// the request (the proxy-reported one, else the primary target), so the
// client can send it back. With session_id, a session ID is read from the
// first non-empty source header (x-session-id) and bound to the target in
// PreRequest (rebound to the served endpoint if the proxy used another);
// bindings unused for evictionTtlSeconds (300) are swept every
// evictionSweepSeconds (10).
//
// Formula: the session's endpoint scores 1 and every other candidate 0.
// Without a session, with an unknown or undecodable token, or when the
// session's endpoint is not a candidate, every candidate scores 0, as in
// llm-d: a constant expresses no preference, and 0 leaves the other
// scorers' totals unchanged.
type SessionAffinity struct {
	name    scheduler.TypedName
	byID    bool
	profile string
	header  string          // request header, lower case
	outName string          // response header, as configured
	sources []SessionSource // trimmed; headers in lower case
	ttl     time.Duration
	every   time.Duration
	handle  *scheduler.Handle
	clock   scheduler.Clock
	log     logr.Logger

	maxSessions int
	// book is shared with the instance a reload with new parameters
	// builds (Inherit), so the sessions keep their endpoints.
	book *sessionBook

	// producerName is sessionIDProducerName; followListed lets Resolve
	// take a listed session-id-producer when no strategy was given.
	// producer, once resolved, is the producer's instance whose bindings
	// this one reads instead of keeping its own.
	producerName string
	followListed bool
	producer     *SessionAffinity
}

// sessionBook holds the session_id bindings.
type sessionBook struct {
	// Sessions are keyed by a seeded hash of the ID, so an entry's size
	// does not depend on how long a client makes its ID.
	seed  maphash.Seed
	mu    sync.RWMutex
	table sessionTable // hash of the session ID -> endpoint
	// full is set when a new session first finds the table full, and
	// cleared by a sweep that makes room, so a full table is logged once.
	full bool
}

// sessionNote carries one instance's pick from PreRequest to
// ResponseHeaders; instances chain their notes under one key.
type sessionNote struct {
	owner   *SessionAffinity
	targets []*endpoint.Endpoint
	session string
	served  bool // the proxy's served endpoint refers to these targets
	next    *sessionNote
}

var sessionNoteKey = scheduler.NewKey[*sessionNote]("session-affinity-pick")

var (
	_ scheduler.ScoreWriter     = (*SessionAffinity)(nil)
	_ scheduler.PreRequest      = (*SessionAffinity)(nil)
	_ scheduler.ResponseHeaders = (*SessionAffinity)(nil)
	_ scheduler.Runnable        = (*SessionAffinity)(nil)
	_ scheduler.StateDumper     = (*SessionAffinity)(nil) // in session_dump.go
	_ scheduler.AttributeReader = (*SessionAffinity)(nil)
	_ scheduler.Inheritor       = (*SessionAffinity)(nil)
	_ scheduler.Resolver        = (*SessionAffinity)(nil) // session_producer.go
)

// NewSessionAffinity validates p and returns a session affinity scorer. h
// supplies the clock, logger and pool (any of them may be unset).
func NewSessionAffinity(name string, p SessionAffinityParams, h *scheduler.Handle) (*SessionAffinity, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	s := &SessionAffinity{
		name:    scheduler.TypedName{Type: SessionAffinityType, Name: name},
		byID:    p.Strategy == StrategySessionID,
		profile: p.ProfileName,
		outName: strings.TrimSpace(p.EncodedEndpointHeaderConfig.Header),
		ttl:     seconds(p.SessionIDConfig.EvictionTTLSeconds),
		every:   seconds(p.SessionIDConfig.EvictionSweepSeconds),
		handle:  h,
		clock:   handleClock(h),
		log:     handleLog(h).WithValues("plugin", name),
		book:    &sessionBook{table: newSessionTable(), seed: maphash.MakeSeed()},

		maxSessions:  p.SessionIDConfig.MaxSessions,
		producerName: strings.TrimSpace(p.SessionIDProducerName),
	}
	s.header = strings.ToLower(s.outName)
	for _, src := range p.SessionIDConfig.Sources {
		s.sources = append(s.sources, SessionSource{
			Header:    strings.ToLower(strings.TrimSpace(src.Header)),
			Cookie:    strings.TrimSpace(src.Cookie),
			Attribute: strings.TrimSpace(src.Attribute),
		})
	}
	return s, nil
}

// SessionAffinityFactory builds a SessionAffinity from config.
func SessionAffinityFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	p, strategyGiven, err := sessionAffinityParamsOf(raw)
	if err != nil {
		return nil, err
	}
	plugin, err := NewSessionAffinity(name, p, h)
	if err != nil {
		return nil, err // not a typed nil inside the interface
	}
	plugin.followListed = !strategyGiven
	return plugin, nil
}

// SessionAffinityRegistration describes the plugin type for the registry.
func SessionAffinityRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    SessionAffinityType,
		Factory: SessionAffinityFactory,
		Params:  SessionAffinityParams{},
		Summary: "Keeps a session on the endpoint that served it (token header or server-side session ID): 1 there, 0 elsewhere.",
	}
}

// TypedName implements scheduler.Plugin.
func (s *SessionAffinity) TypedName() scheduler.TypedName { return s.name }

// Score implements scheduler.Scorer.
func (s *SessionAffinity) Score(ctx context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) []float64 {
	out := make([]float64, len(eps))
	s.ScoreInto(ctx, state, req, eps, out)
	return out
}

// ScoreInto implements scheduler.ScoreWriter.
func (s *SessionAffinity) ScoreInto(_ context.Context, _ *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint, out []float64) {
	if i := s.sessionEndpoint(req, eps); i >= 0 {
		out[i] = 1
	}
}

// sessionEndpoint returns the index in eps of the endpoint the request's
// session names, or -1 when it has no session, an unknown or undecodable
// one, or its endpoint is not among eps.
func (s *SessionAffinity) sessionEndpoint(req *scheduler.Request, eps []*endpoint.Endpoint) int {
	if len(eps) == 0 || req == nil {
		return -1
	}
	if s.producer != nil {
		return s.producer.sessionIDEndpoint(req, eps)
	}
	if s.byID {
		return s.sessionIDEndpoint(req, eps)
	}
	return s.tokenEndpoint(req, eps)
}

func (s *SessionAffinity) tokenEndpoint(req *scheduler.Request, eps []*endpoint.Endpoint) int {
	tok := req.Header(s.header)
	if tok == "" {
		return -1
	}
	var buf [maxTokenBytes]byte
	n, ok := decodeToken(buf[:], tok)
	if !ok {
		s.log.V(1).Info("ignoring undecodable session token", "requestID", req.ID)
		return -1
	}
	for i, e := range eps {
		if tokenNames(buf[:n], e) {
			return i
		}
	}
	return -1
}

func (s *SessionAffinity) sessionIDEndpoint(req *scheduler.Request, eps []*endpoint.Endpoint) int {
	id := s.sessionID(req)
	if id == "" {
		return -1
	}
	b := s.book
	b.mu.RLock()
	hostPort, ok := b.table.lookup(maphash.String(b.seed, id))
	b.mu.RUnlock()
	if !ok {
		return -1
	}
	for i, e := range eps {
		if e.HostPort == hostPort {
			return i
		}
	}
	return -1
}

// sessionID returns the value of the first configured source the request
// has. Header and attribute IDs share one table: a client sending the same
// value both ways is one session.
func (s *SessionAffinity) sessionID(req *scheduler.Request) string {
	for _, src := range s.sources {
		v := ""
		switch {
		case src.Attribute != "":
			v = req.Attribute(src.Attribute)
		case src.Cookie != "":
			v = cookieValue(req.Header("cookie"), src.Cookie)
		default:
			v = req.Header(src.Header)
		}
		if v != "" {
			return v
		}
	}
	return ""
}

// cookieValue returns the value of the cookie called name in a Cookie
// header, "" when it has none (or cannot be parsed).
func cookieValue(header, name string) string {
	if header == "" {
		return ""
	}
	cookies, err := http.ParseCookie(header)
	if err != nil {
		return ""
	}
	for _, c := range cookies {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// AttributeKeys implements scheduler.AttributeReader: the attributes the
// session_id strategy reads (none with encoded_endpoint_header, which
// ignores its sources).
func (s *SessionAffinity) AttributeKeys() []string {
	if !s.byID {
		return nil
	}
	var keys []string
	for _, src := range s.sources {
		if src.Attribute != "" {
			keys = append(keys, src.Attribute)
		}
	}
	return keys
}

// PreRequest remembers the pick for ResponseHeaders and, with session_id,
// binds the session to it.
func (s *SessionAffinity) PreRequest(_ context.Context, state *scheduler.State, req *scheduler.Request, result *scheduler.Result) {
	if result == nil || s.producer != nil { // a producer binds its own sessions
		return
	}
	targets := result.Targets()
	if s.profile != "" && s.profile != result.Primary {
		targets = nil
		if pr := result.Profiles[s.profile]; pr != nil {
			targets = pr.Targets
		}
	}
	if len(targets) == 0 {
		return
	}
	head, _ := sessionNoteKey.Get(state)
	note := &sessionNote{owner: s, targets: targets, served: s.profile == "" || s.profile == result.Primary, next: head}
	if s.byID && req != nil {
		note.session = s.sessionID(req)
		if note.session != "" {
			s.bind(note.session, targets[0].HostPort)
		}
	}
	sessionNoteKey.Set(state, note)
}

// ResponseHeaders hands the client its token (encoded_endpoint_header) or
// rebinds the session when a fallback served it (session_id).
func (s *SessionAffinity) ResponseHeaders(_ context.Context, state *scheduler.State, _ *scheduler.Request, resp *scheduler.Response) {
	note := s.note(state)
	if note == nil {
		return
	}
	hostPort, e := note.targets[0].HostPort, note.targets[0]
	if sv := strings.TrimSpace(resp.Served); note.served && sv != "" && sv != hostPort {
		hostPort, e = sv, servedEndpoint(s.handle, note.targets, sv)
	}
	if s.byID {
		if note.session != "" && hostPort != note.targets[0].HostPort {
			s.bind(note.session, hostPort)
		}
		return
	}
	resp.SetHeader(s.outName, endpointToken(e, hostPort))
}

// Inherit implements scheduler.Inheritor: a reload that changed the
// parameters (a longer TTL, a bigger maxSessions, another header) keeps the
// session_id bindings, so live sessions stay on their endpoints. The old
// instance binds into the same book while its requests finish. A strategy
// change inherits nothing: tokens need no book.
func (s *SessionAffinity) Inherit(prev scheduler.Plugin) {
	if old, ok := prev.(*SessionAffinity); ok && old.byID && s.byID {
		s.book = old.book
	}
}

// note finds this instance's note in state.
func (s *SessionAffinity) note(state *scheduler.State) *sessionNote {
	n, _ := sessionNoteKey.Get(state)
	for ; n != nil; n = n.next {
		if n.owner == s {
			return n
		}
	}
	return nil
}

func (s *SessionAffinity) bind(id, hostPort string) {
	b := s.book
	now, key := s.clock.Now().UnixNano(), maphash.String(b.seed, id)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.table.bind(key, hostPort, now, s.maxSessions) && !b.full {
		b.full = true
		s.log.Info("session map full: new sessions replace the least recently used ones until idle ones expire",
			"maxSessions", s.maxSessions, "evictionTtl", s.ttl)
	}
}

// sweepBatch bounds how many expired bindings one hold of the write lock
// removes, so a sweep after a burst of sessions never stalls scoring.
const sweepBatch = 256

// sweep drops bindings unused for the TTL and returns how many.
func (s *SessionAffinity) sweep(now time.Time) int {
	cutoff := now.Add(-s.ttl).UnixNano()
	total, b := 0, s.book
	for {
		b.mu.Lock()
		n := b.table.expire(cutoff, sweepBatch)
		if b.table.len() < s.maxSessions {
			b.full = false
		}
		b.mu.Unlock()
		total += n
		if n < sweepBatch {
			return total
		}
	}
}

// Start sweeps expired session bindings until ctx is done (session_id
// only; the token strategy keeps no state and just waits).
func (s *SessionAffinity) Start(ctx context.Context) error {
	if !s.byID {
		<-ctx.Done()
		return nil
	}
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if n := s.sweep(s.clock.Now()); n > 0 {
				s.log.V(1).Info("evicted idle sessions", "count", n)
			}
		}
	}
}

// endpointToken is the session token for e: base64("namespace/name"), or
// base64(hostPort) when the endpoint is not known.
func endpointToken(e *endpoint.Endpoint, hostPort string) string {
	if e == nil {
		return base64.StdEncoding.EncodeToString([]byte(hostPort))
	}
	return base64.StdEncoding.EncodeToString([]byte(e.Namespace + "/" + e.Name))
}
