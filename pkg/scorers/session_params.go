package scorers

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/openepp/openepp/pkg/scheduler"
)

// DefaultMaxSessions is the default bound on session_id bindings (about 4 MB).
const DefaultMaxSessions = 100_000

// SessionAffinityParams configures SessionAffinity, in llm-d's shape: only
// the block matching the strategy is used, but both are validated.
type SessionAffinityParams struct {
	Strategy string `json:"strategy" doc:"encoded_endpoint_header (token echoed by the client) or session_id (server-side binding)" default:"encoded_endpoint_header"`
	// ProfileName selects the profile whose pick the session follows (e.g.
	// "prefill" for a second instance in disaggregated serving).
	ProfileName                 string                `json:"profileName" doc:"profile whose picked endpoint the session follows; empty = the primary profile" default:""`
	EncodedEndpointHeaderConfig EncodedEndpointParams `json:"encodedEndpointHeaderConfig" doc:"settings of the encoded_endpoint_header strategy" default:"{\"header\":\"x-session-token\"}"`
	SessionIDConfig             SessionIDParams       `json:"sessionIdConfig" doc:"settings of the session_id strategy; each source is {header: name}, {cookie: name} or {attribute: agent-identity} (the session the agent-identity plugin reads, which must then be configured) (maxSessions is an OpenEPP extension bounding the bindings; when full, a new session replaces the least recently used one)" default:"{\"sources\":[{\"header\":\"x-session-id\"}],\"evictionTtlSeconds\":300,\"evictionSweepSeconds\":10,\"maxSessions\":100000}"`
	// SessionIDProducerName is llm-d's newer form: the sessions are a
	// session-id-producer's, and the strategy settings above are unused.
	SessionIDProducerName string `json:"sessionIDProducerName" doc:"follow the bindings of this session-id-producer (llm-d's newer form) instead of a strategy of its own; empty: its own strategy, or the plugin named session-id-producer when the config lists one and no strategy is given" default:""`
}

// EncodedEndpointParams configures the encoded_endpoint_header strategy.
type EncodedEndpointParams struct {
	Header string `json:"header" doc:"request and response header carrying the base64 endpoint token" default:"x-session-token"`
}

// SessionIDParams configures the session_id strategy.
type SessionIDParams struct {
	Sources              []SessionSource `json:"sources" doc:"where the session ID is read from, in priority order; the first non-empty wins" default:"[{\"header\":\"x-session-id\"}]"`
	EvictionTTLSeconds   float64         `json:"evictionTtlSeconds" doc:"seconds an unused session binding survives" default:"300"`
	EvictionSweepSeconds float64         `json:"evictionSweepSeconds" doc:"seconds between sweeps of expired bindings" default:"10"`
	// MaxSessions bounds memory: session IDs come from clients, and a flood
	// of new ones within the TTL would otherwise grow the map without end.
	MaxSessions int `json:"maxSessions" doc:"bindings kept at most (OpenEPP extension); when full, a new session replaces the least recently used one" default:"100000"`
}

// SessionSource names where a session ID is read from: a request header, a
// cookie, or a request attribute another plugin publishes (agent-identity's
// "agent-identity"); exactly one of them.
type SessionSource struct {
	Header    string `json:"header" doc:"request header carrying the session ID" default:""`
	Cookie    string `json:"cookie" doc:"cookie (in the Cookie request header) carrying the session ID; instead of header" default:""`
	Attribute string `json:"attribute" doc:"request attribute carrying the session ID, published by another configured plugin (agent-identity publishes agent-identity); instead of header" default:""`
}

func defaultSessionAffinityParams() SessionAffinityParams {
	return SessionAffinityParams{
		Strategy:                    StrategyEncodedEndpoint,
		EncodedEndpointHeaderConfig: EncodedEndpointParams{Header: "x-session-token"},
		SessionIDConfig: SessionIDParams{
			// Sources is left nil and defaulted after decoding: JSON decodes
			// a given list into the default's elements, merging fields.
			EvictionTTLSeconds: 300, EvictionSweepSeconds: 10, MaxSessions: DefaultMaxSessions,
		},
	}
}

func (p *SessionAffinityParams) validate() error {
	var errs []error
	if p.Strategy != StrategyEncodedEndpoint && p.Strategy != StrategySessionID {
		errs = append(errs, fmt.Errorf("strategy: must be %q or %q, got %q", StrategyEncodedEndpoint, StrategySessionID, p.Strategy))
	}
	if strings.TrimSpace(p.EncodedEndpointHeaderConfig.Header) == "" {
		errs = append(errs, errors.New("encodedEndpointHeaderConfig.header: must not be empty"))
	}
	c := &p.SessionIDConfig
	if len(c.Sources) == 0 {
		errs = append(errs, errors.New("sessionIdConfig.sources: at least one source is required"))
	}
	for i, src := range c.Sources {
		given := 0
		for _, v := range []string{src.Header, src.Cookie, src.Attribute} {
			if strings.TrimSpace(v) != "" {
				given++
			}
		}
		if given != 1 {
			errs = append(errs, fmt.Errorf("sessionIdConfig.sources[%d]: give exactly one of header, cookie and attribute (got %d)", i, given))
		}
	}
	if !(c.EvictionTTLSeconds > 0) || seconds(c.EvictionTTLSeconds) <= 0 {
		errs = append(errs, fmt.Errorf("sessionIdConfig.evictionTtlSeconds: must be > 0, got %v", c.EvictionTTLSeconds))
	}
	if !(c.EvictionSweepSeconds > 0) || seconds(c.EvictionSweepSeconds) <= 0 {
		errs = append(errs, fmt.Errorf("sessionIdConfig.evictionSweepSeconds: must be > 0, got %v", c.EvictionSweepSeconds))
	}
	if c.MaxSessions < 1 {
		errs = append(errs, fmt.Errorf("sessionIdConfig.maxSessions: must be >= 1, got %d", c.MaxSessions))
	}
	return errors.Join(errs...)
}

// sessionAffinityParamsOf decodes the parameters the scorer and the filter
// share, defaults applied; strategyGiven reports whether any of the
// strategy's own settings was given.
func sessionAffinityParamsOf(raw json.RawMessage) (p SessionAffinityParams, strategyGiven bool, err error) {
	p = defaultSessionAffinityParams()
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return p, false, err
	}
	if p.SessionIDConfig.Sources == nil { // absent; an explicit [] is refused
		p.SessionIDConfig.Sources = []SessionSource{{Header: "x-session-id"}}
	}
	var keys map[string]json.RawMessage
	_ = json.Unmarshal(raw, &keys) // DecodeParams has checked it
	for _, k := range []string{"strategy", "encodedEndpointHeaderConfig", "sessionIdConfig"} {
		if _, ok := keys[k]; ok {
			strategyGiven = true
		}
	}
	return p, strategyGiven, nil
}
