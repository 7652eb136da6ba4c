package scorers

import (
	"context"
	"encoding/json"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// SessionAffinityFilterType is the type name of SessionAffinityFilter.
const SessionAffinityFilterType = "session-affinity-filter"

// SessionAffinityFilter is llm-d's session-affinity-filter: the hard form
// of SessionAffinity. When the request's session names a candidate, only
// that candidate passes; otherwise (no session, an unknown or undecodable
// one, or its endpoint filtered out or gone) every candidate passes, so the
// filter never empties the set and a session whose server left moves on.
//
// It reads and keeps sessions exactly as the scorer does, with the same
// parameters: it hands out tokens (encoded_endpoint_header) or binds
// session IDs (session_id) in its own hooks, so it works alone. Prefer the
// scorer where load should be able to outweigh a session: the filter keeps
// a session on its server however busy that server is.
type SessionAffinityFilter struct {
	// inner is held, not embedded, so the filter is not also a Scorer.
	inner *SessionAffinity
}

var (
	_ scheduler.Filter          = (*SessionAffinityFilter)(nil)
	_ scheduler.PreRequest      = (*SessionAffinityFilter)(nil)
	_ scheduler.ResponseHeaders = (*SessionAffinityFilter)(nil)
	_ scheduler.Runnable        = (*SessionAffinityFilter)(nil)
	_ scheduler.StateDumper     = (*SessionAffinityFilter)(nil)
	_ scheduler.AttributeReader = (*SessionAffinityFilter)(nil)
	_ scheduler.Inheritor       = (*SessionAffinityFilter)(nil)
	_ scheduler.Resolver        = (*SessionAffinityFilter)(nil) // session_producer.go
)

// NewSessionAffinityFilter validates p and returns a session affinity
// filter; h as for NewSessionAffinity.
func NewSessionAffinityFilter(name string, p SessionAffinityParams, h *scheduler.Handle) (*SessionAffinityFilter, error) {
	s, err := NewSessionAffinity(name, p, h)
	if err != nil {
		return nil, err
	}
	s.name.Type = SessionAffinityFilterType
	return &SessionAffinityFilter{inner: s}, nil
}

// SessionAffinityFilterFactory builds a SessionAffinityFilter from config.
func SessionAffinityFilterFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	p, strategyGiven, err := sessionAffinityParamsOf(raw)
	if err != nil {
		return nil, err
	}
	plugin, err := NewSessionAffinityFilter(name, p, h)
	if err != nil {
		return nil, err // not a typed nil inside the interface
	}
	plugin.inner.followListed = !strategyGiven
	return plugin, nil
}

// SessionAffinityFilterRegistration describes the plugin type for the registry.
func SessionAffinityFilterRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    SessionAffinityFilterType,
		Factory: SessionAffinityFilterFactory,
		Params:  SessionAffinityParams{},
		Summary: "Pins a session to the endpoint that served it (session-affinity-scorer's strategies); passes every candidate when that endpoint is not one.",
	}
}

// TypedName implements scheduler.Plugin.
func (f *SessionAffinityFilter) TypedName() scheduler.TypedName { return f.inner.name }

// Filter implements scheduler.Filter.
func (f *SessionAffinityFilter) Filter(_ context.Context, _ *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) []*endpoint.Endpoint {
	if i := f.inner.sessionEndpoint(req, eps); i >= 0 {
		return eps[i : i+1 : i+1]
	}
	return eps
}

// PreRequest binds the session (session_id) and notes the pick.
func (f *SessionAffinityFilter) PreRequest(ctx context.Context, state *scheduler.State, req *scheduler.Request, result *scheduler.Result) {
	f.inner.PreRequest(ctx, state, req, result)
}

// ResponseHeaders hands out the token or rebinds after a fallback.
func (f *SessionAffinityFilter) ResponseHeaders(ctx context.Context, state *scheduler.State, req *scheduler.Request, resp *scheduler.Response) {
	f.inner.ResponseHeaders(ctx, state, req, resp)
}

// Start sweeps expired session bindings until ctx is done.
func (f *SessionAffinityFilter) Start(ctx context.Context) error { return f.inner.Start(ctx) }

// DumpState implements scheduler.StateDumper: a SessionAffinityState.
func (f *SessionAffinityFilter) DumpState() any { return f.inner.DumpState() }

// AttributeKeys implements scheduler.AttributeReader.
func (f *SessionAffinityFilter) AttributeKeys() []string { return f.inner.AttributeKeys() }

// Inherit implements scheduler.Inheritor: session_id bindings survive a
// reload with new parameters, as the scorer's do.
func (f *SessionAffinityFilter) Inherit(prev scheduler.Plugin) {
	if old, ok := prev.(*SessionAffinityFilter); ok {
		prev = old.inner
	}
	f.inner.Inherit(prev)
}
