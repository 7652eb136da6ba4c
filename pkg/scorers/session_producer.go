package scorers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/openepp/openepp/pkg/scheduler"
)

// SessionIDProducerType is the type name of SessionIDProducer.
const SessionIDProducerType = "session-id-producer"

// SessionIDProducerParams configures SessionIDProducer, as llm-d names them.
type SessionIDProducerParams struct {
	HeaderName string `json:"headerName" doc:"request header carrying the session ID (case-insensitive); give this or cookieName (with no parameters at all: x-session-id)" default:""`
	CookieName string `json:"cookieName" doc:"cookie carrying the session ID; instead of headerName" default:""`
	LRUSize    int    `json:"lruSize" doc:"session bindings kept at most; when full, a new session replaces the least recently used one" default:"1024"`
	TTL        string `json:"ttl" doc:"how long a binding lives unused (Go duration)" default:"30m"`
}

// maxSessionSweep bounds the time between sweeps of expired bindings.
const maxSessionSweep = 10 * time.Second

// SessionIDProducer is llm-d's session-id-producer (its newer session
// design): it reads a session ID from a header or a cookie and binds the
// session to the endpoint its request was routed to (rebound to the one
// the proxy reports having served it, after a fallback), so the
// session-affinity scorer and filter naming it (sessionIDProducerName) send
// the session's next requests there. Bindings unused for ttl expire; at
// most lruSize are kept, the least recently used giving way. Nothing is
// written to the response. It is the session_id strategy of
// session-affinity-scorer, owned by the producer so several consumers
// share one set of bindings.
type SessionIDProducer struct {
	inner *SessionAffinity // session_id strategy; held so it is no Scorer
}

var (
	_ scheduler.PreRequest      = (*SessionIDProducer)(nil)
	_ scheduler.ResponseHeaders = (*SessionIDProducer)(nil)
	_ scheduler.Runnable        = (*SessionIDProducer)(nil)
	_ scheduler.StateDumper     = (*SessionIDProducer)(nil)
	_ scheduler.Inheritor       = (*SessionIDProducer)(nil)
)

// SessionIDProducerFactory builds a SessionIDProducer from config.
func SessionIDProducerFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	p := SessionIDProducerParams{LRUSize: 1024, TTL: "30m"}
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	var given map[string]json.RawMessage
	_ = json.Unmarshal(raw, &given) // DecodeParams has checked it
	header, cookie := strings.TrimSpace(p.HeaderName), strings.TrimSpace(p.CookieName)
	var errs []error
	switch {
	case header != "" && cookie != "":
		errs = append(errs, errors.New("headerName and cookieName: give one of them"))
	case header == "" && cookie == "" && len(given) > 0:
		errs = append(errs, errors.New("headerName or cookieName: one is required when parameters are given"))
	case header == "" && cookie == "":
		header = "x-session-id" // llm-d's default instance
	}
	ttl, err := time.ParseDuration(p.TTL)
	if err != nil || ttl <= 0 {
		errs = append(errs, fmt.Errorf("ttl: must be a Go duration > 0, got %q", p.TTL))
	}
	if p.LRUSize < 1 {
		errs = append(errs, fmt.Errorf("lruSize: must be >= 1, got %d", p.LRUSize))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	inner, err := NewSessionAffinity(name, SessionAffinityParams{
		Strategy:                    StrategySessionID,
		EncodedEndpointHeaderConfig: EncodedEndpointParams{Header: "x-session-token"}, // unused
		SessionIDConfig: SessionIDParams{
			Sources:            []SessionSource{{Header: header, Cookie: cookie}},
			EvictionTTLSeconds: ttl.Seconds(), EvictionSweepSeconds: min(ttl, maxSessionSweep).Seconds(),
			MaxSessions: p.LRUSize,
		},
	}, h)
	if err != nil {
		return nil, err
	}
	inner.name.Type = SessionIDProducerType
	return &SessionIDProducer{inner: inner}, nil
}

// SessionIDProducerRegistration describes the plugin type for the registry.
func SessionIDProducerRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    SessionIDProducerType,
		Factory: SessionIDProducerFactory,
		Params:  SessionIDProducerParams{},
		Summary: "Binds each session (ID from a header or cookie) to the endpoint that served it, for the session-affinity scorer and filter that name it.",
	}
}

// TypedName implements scheduler.Plugin.
func (p *SessionIDProducer) TypedName() scheduler.TypedName { return p.inner.name }

// PreRequest binds the session to the request's target.
func (p *SessionIDProducer) PreRequest(ctx context.Context, state *scheduler.State, req *scheduler.Request, result *scheduler.Result) {
	p.inner.PreRequest(ctx, state, req, result)
}

// ResponseHeaders rebinds the session when a fallback served it.
func (p *SessionIDProducer) ResponseHeaders(ctx context.Context, state *scheduler.State, req *scheduler.Request, resp *scheduler.Response) {
	p.inner.ResponseHeaders(ctx, state, req, resp)
}

// Start sweeps expired bindings until ctx is done.
func (p *SessionIDProducer) Start(ctx context.Context) error { return p.inner.Start(ctx) }

// DumpState implements scheduler.StateDumper: a SessionAffinityState.
func (p *SessionIDProducer) DumpState() any { return p.inner.DumpState() }

// Inherit implements scheduler.Inheritor: bindings survive a reload.
func (p *SessionIDProducer) Inherit(prev scheduler.Plugin) {
	if old, ok := prev.(*SessionIDProducer); ok {
		p.inner.Inherit(old.inner)
	}
}

// Resolve implements scheduler.Resolver: with sessionIDProducerName, or
// with no strategy given and a plugin named session-id-producer in the
// config, the instance follows that producer's bindings.
func (s *SessionAffinity) Resolve(h *scheduler.Handle) error {
	name := s.producerName
	if name == "" && s.followListed && h != nil {
		if p, ok := h.Plugin(SessionIDProducerType); ok {
			if _, isProducer := p.(*SessionIDProducer); isProducer {
				name = SessionIDProducerType
			}
		}
	}
	if name == "" {
		return nil
	}
	if h == nil {
		return errors.New("sessionIDProducerName: no plugin handle to resolve it with")
	}
	p, ok := h.Plugin(name)
	if !ok {
		return fmt.Errorf("sessionIDProducerName: no plugin named %q in the config (list `- type: %s`)", name, SessionIDProducerType)
	}
	producer, ok := p.(*SessionIDProducer)
	if !ok {
		return fmt.Errorf("sessionIDProducerName: plugin %q (type %q) is not a %s", name, p.TypedName().Type, SessionIDProducerType)
	}
	s.producer = producer.inner
	return nil
}

// Resolve implements scheduler.Resolver, as the scorer's.
func (f *SessionAffinityFilter) Resolve(h *scheduler.Handle) error { return f.inner.Resolve(h) }
