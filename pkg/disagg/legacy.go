package disagg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
)

// LegacyHandlerType is llm-d's deprecated P/D handler, kept so old configs
// load: it is a disagg-profile-handler (decode-first) with a built-in
// decider.
const LegacyHandlerType = "pd-profile-handler"

// LegacyParams are the deprecated handler's parameters.
type LegacyParams struct {
	Threshold        int    `json:"threshold" doc:"decode-only while (1 − prefix hit ratio on the decode endpoint) × prompt bytes is below this" default:"0"`
	HashBlockSize    int    `json:"hashBlockSize" doc:"accepted and ignored: the prefix producer's block size is used" default:"0"`
	DecodeProfile    string `json:"decodeProfile" doc:"the decode profile" default:"decode"`
	PrefillProfile   string `json:"prefillProfile" doc:"the prefill profile" default:"prefill"`
	PrefixPluginName string `json:"prefixPluginName" doc:"instance name of the prefix-match producer or prefix-cache-scorer" default:"prefix-cache-scorer"`
	PrimaryPort      int    `json:"primaryPort" doc:"not supported (data-parallel port rewriting); use an InferencePool with several targetPorts" default:"0"`
}

// LegacyFactory builds the deprecated handler from config.
func LegacyFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	var p LegacyParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if p.PrimaryPort != 0 {
		return nil, errors.New("primaryPort: data-parallel port rewriting is not supported; list every rank's port in the InferencePool's targetPorts")
	}
	if p.Threshold < 0 {
		return nil, fmt.Errorf("threshold: %d must be >= 0", p.Threshold)
	}
	if p.PrefixPluginName == "" {
		p.PrefixPluginName = "prefix-cache-scorer"
	}
	d, err := NewHandler(name, HandlerParams{Profiles: StageProfiles{Decode: p.DecodeProfile, Prefill: p.PrefillProfile}}, h)
	if err != nil {
		return nil, err
	}
	d.name.Type = LegacyHandlerType
	d.legacy = &legacyDecider{threshold: p.Threshold, sourceName: p.PrefixPluginName}
	if h != nil {
		h.Log.Info("warning: pd-profile-handler is deprecated; use disagg-profile-handler with a prefix-based-pd-decider", "plugin", name)
	}
	return d, nil
}

// LegacyRegistration describes the deprecated type for the registry.
func LegacyRegistration() scheduler.Registration {
	return scheduler.Registration{Type: LegacyHandlerType, Factory: LegacyFactory, Params: LegacyParams{},
		Summary: "Deprecated (llm-d): P/D with a threshold on uncached prompt bytes; use disagg-profile-handler."}
}

// legacyDecider is the old rule: decode-only while the uncached share of
// the prompt's bytes is below threshold.
type legacyDecider struct {
	threshold  int
	sourceName string
	source     prefix.Source
}

func (l *legacyDecider) resolve(h *scheduler.Handle) error {
	p, ok := h.Plugin(l.sourceName)
	if !ok {
		h.Log.Info("pd-profile-handler: no prefix plugin; every prompt byte counts as uncached", "prefixPluginName", l.sourceName)
		return nil
	}
	src, ok := p.(prefix.Source)
	if !ok {
		return fmt.Errorf("prefixPluginName: plugin %q (type %q) does not produce prefix matches", l.sourceName, p.TypedName().Type)
	}
	l.source = src
	return nil
}

func (l *legacyDecider) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: LegacyHandlerType}
}

func (l *legacyDecider) Disaggregate(_ context.Context, state *scheduler.State, req *scheduler.Request, decode *endpoint.Endpoint) bool {
	if req.Body == nil {
		return false
	}
	hit := 0.0
	if l.source != nil && decode != nil {
		if m, ok := l.source.Match(state); ok && m != nil {
			hit = m.Ratio(decode)
		}
	}
	return (1-hit)*float64(len(req.Body.Prompt)) >= float64(l.threshold)
}
