package requestcontrol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/openepp/openepp/pkg/scheduler"
)

// AgentIdentityType is llm-d's type name of AgentIdentity.
const AgentIdentityType = "agent-identity"

// MaxAgentIDBytes bounds the session ID taken from a header: a longer value
// is cut to its first MaxAgentIDBytes bytes (at a character boundary), so a
// client cannot make flow IDs, and the queues keyed by them, arbitrarily
// large.
const MaxAgentIDBytes = 128

// AgentIdentityParams configures AgentIdentity. llm-d does not publish its
// parameters; these are OpenEPP's.
type AgentIdentityParams struct {
	Headers []string `json:"headers" doc:"request headers carrying the agent's session ID, in priority order (case-insensitive); the first with a non-blank value wins" default:"[\"x-claude-code-session-id\",\"x-session-affinity\"]"`
	// Prefix keeps agent flows recognisable on the metrics and apart from
	// the IDs clients choose with the fairness headers.
	Prefix string `json:"prefix" doc:"prepended to the session ID to form the fairness ID; may be empty" default:"agent:"`
}

// DefaultAgentIdentityParams returns the defaults: Claude Code's session
// header, then the generic x-session-affinity, and the prefix "agent:".
func DefaultAgentIdentityParams() AgentIdentityParams {
	return AgentIdentityParams{Headers: []string{"x-claude-code-session-id", "x-session-affinity"}, Prefix: "agent:"}
}

func (p *AgentIdentityParams) validate() error {
	var errs []error
	if len(p.Headers) == 0 {
		errs = append(errs, errors.New("headers: at least one header is required"))
	}
	for i, h := range p.Headers {
		if strings.TrimSpace(h) == "" {
			errs = append(errs, fmt.Errorf("headers[%d]: must not be empty", i))
		}
	}
	return errors.Join(errs...)
}

// AgentIdentity gives every coding-agent session its own fairness ID, so
// that with flow control (feature gate flowControl) each session is its own
// flow and a fairness policy such as round-robin-fairness-policy shares the
// pool between sessions: one agent opening many concurrent requests cannot
// starve the others (llm-d's agent-identity).
//
// Inputs: the request headers. Parameters: headers
// (x-claude-code-session-id, x-session-affinity) and prefix ("agent:").
// Rule: the fairness ID is prefix + the value of the first listed header
// whose value is not blank, trimmed of surrounding white space and cut to
// MaxAgentIDBytes bytes. A request with none of the headers gets no ID from
// this plugin (the next source's, else default-flow), and one that names its
// flow with x-llm-d-inference-fairness-id or x-gateway-inference-fairness-id
// keeps it: an explicit choice always wins. The same ID is published as
// the request attribute agent-identity (as in llm-d), which
// session-affinity-scorer's sessionIdConfig.sources can name.
//
// The ID also labels the request and flow-control metrics (fairness_id),
// under the EPP's cap of 1,000 values, which makes room by deleting the
// series of sessions idle for ten minutes; only while a thousand sessions
// are active are new ones counted as "other".
type AgentIdentity struct {
	name    scheduler.TypedName
	headers []string // lower case, as the EPP stores request headers
	prefix  string
}

var (
	_ scheduler.FairnessSource  = (*AgentIdentity)(nil)
	_ scheduler.AttributeSource = (*AgentIdentity)(nil)
)

// NewAgentIdentity validates p and returns the plugin called name.
func NewAgentIdentity(name string, p AgentIdentityParams) (*AgentIdentity, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	a := &AgentIdentity{name: scheduler.TypedName{Type: AgentIdentityType, Name: name}, prefix: p.Prefix}
	for _, h := range p.Headers {
		a.headers = append(a.headers, strings.ToLower(strings.TrimSpace(h)))
	}
	return a, nil
}

// AgentIdentityFactory builds an AgentIdentity from config; absent
// parameters keep their defaults.
func AgentIdentityFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	p := DefaultAgentIdentityParams()
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	a, err := NewAgentIdentity(name, p)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// AgentIdentityRegistration describes the plugin type for the registry.
func AgentIdentityRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type: AgentIdentityType, Factory: AgentIdentityFactory, Params: AgentIdentityParams{},
		Summary: "Gives each coding-agent session its own flow (feature gate flowControl) and fairness_id metric label: the " +
			"fairness ID of a request that names none (x-llm-d-inference-fairness-id / x-gateway-inference-fairness-id win) " +
			"becomes prefix + the first non-blank session header (trimmed, cut to 128 bytes); a request without one gets " +
			"default-flow. llm-d's agent-identity.",
	}
}

// TypedName implements scheduler.Plugin.
func (a *AgentIdentity) TypedName() scheduler.TypedName { return a.name }

// FairnessID implements scheduler.FairnessSource.
func (a *AgentIdentity) FairnessID(_ context.Context, headers map[string]string) string {
	for _, h := range a.headers {
		if id := strings.TrimSpace(headers[h]); id != "" {
			return a.prefix + strings.TrimSpace(truncate(id, MaxAgentIDBytes))
		}
	}
	return ""
}

// AgentIdentityAttribute is the request attribute AgentIdentity publishes:
// the same value as the fairness ID it derives, whether or not a fairness
// header overrides that for flow control.
const AgentIdentityAttribute = "agent-identity"

// AttributeKey implements scheduler.AttributeSource.
func (a *AgentIdentity) AttributeKey() string { return AgentIdentityAttribute }

// Attribute implements scheduler.AttributeSource: the agent session, so
// session-affinity-scorer can keep a session on one endpoint with
// sources: [{attribute: agent-identity}], as in llm-d.
func (a *AgentIdentity) Attribute(ctx context.Context, headers map[string]string) string {
	return a.FairnessID(ctx, headers)
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
