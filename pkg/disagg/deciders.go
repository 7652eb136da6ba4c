package disagg

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
)

// Decider decides whether one optional stage (prefill, encode) of a request
// runs on its own endpoint. Deciders are plugins: the handler names them in
// its deciders parameter, so out-of-tree ones work alike.
type Decider interface {
	scheduler.Plugin
	// Disaggregate is called once per request and stage. decode is the
	// decode pick, or nil when the stage is decided before decode runs.
	Disaggregate(ctx context.Context, state *scheduler.State, req *scheduler.Request, decode *endpoint.Endpoint) bool
}

// The decider types.
const (
	PrefixDeciderType     = "prefix-based-pd-decider"
	AlwaysDeciderType     = "always-disagg-pd-decider"
	MultimodalDeciderType = "always-disagg-multimodal-decider"
)

// PrefixDeciderParams configures PrefixDecider.
type PrefixDeciderParams struct {
	NonCachedTokens  int    `json:"nonCachedTokens" doc:"disaggregate when at least this many prompt tokens are not cached on the decode endpoint; 0 never disaggregates" default:"0"`
	PromptTokens     int    `json:"promptTokens" doc:"and only when the prompt has at least this many tokens; 0 turns this gate off" default:"0"`
	PrefixPluginName string `json:"prefixPluginName" doc:"instance name of the prefix-match producer (OpenEPP; a prefix-cache-scorer also works); without one every prompt token counts as uncached" default:"approx-prefix-cache-producer"`
}

// PrefixDecider sends a prefill elsewhere when the decode endpoint would
// have to compute much of it: the prompt (estimated at four bytes per token)
// minus the tokens the prefix index believes the decode endpoint holds.
// Short or well-cached prompts stay on the decode endpoint, where a KV
// transfer would cost more than the prefill saves.
type PrefixDecider struct {
	name   scheduler.TypedName
	params PrefixDeciderParams
	named  bool // prefixPluginName was given: it must exist
	source prefix.Source
}

// NewPrefixDecider validates p and returns a decider; Resolve finds its
// prefix source.
func NewPrefixDecider(name string, p PrefixDeciderParams) (*PrefixDecider, error) {
	if p.NonCachedTokens < 0 || p.PromptTokens < 0 {
		return nil, fmt.Errorf("nonCachedTokens (%d) and promptTokens (%d) must be >= 0", p.NonCachedTokens, p.PromptTokens)
	}
	named := p.PrefixPluginName != ""
	if !named {
		p.PrefixPluginName = prefix.ProducerType
	}
	return &PrefixDecider{name: scheduler.TypedName{Type: PrefixDeciderType, Name: name}, params: p, named: named}, nil
}

// PrefixDeciderFactory builds a PrefixDecider from config.
func PrefixDeciderFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	var p PrefixDeciderParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	return NewPrefixDecider(name, p)
}

// PrefixDeciderRegistration describes the plugin type for the registry.
func PrefixDeciderRegistration() scheduler.Registration {
	return scheduler.Registration{Type: PrefixDeciderType, Factory: PrefixDeciderFactory, Params: PrefixDeciderParams{},
		Summary: "Disaggregates the prefill when the prompt's tokens not cached on the decode endpoint reach nonCachedTokens."}
}

// TypedName implements scheduler.Plugin.
func (d *PrefixDecider) TypedName() scheduler.TypedName { return d.name }

// Resolve implements scheduler.Resolver.
func (d *PrefixDecider) Resolve(h *scheduler.Handle) error {
	p, ok := h.Plugin(d.params.PrefixPluginName)
	if !ok {
		if d.named {
			return fmt.Errorf("prefixPluginName: no plugin named %q in the config", d.params.PrefixPluginName)
		}
		h.Log.Info("no prefix-match producer: every prompt token counts as uncached", "plugin", d.name.String())
		return nil
	}
	src, ok := p.(prefix.Source)
	if !ok {
		return fmt.Errorf("prefixPluginName: plugin %q (type %q) does not produce prefix matches", d.params.PrefixPluginName, p.TypedName().Type)
	}
	d.source = src
	return nil
}

// Disaggregate implements Decider.
func (d *PrefixDecider) Disaggregate(_ context.Context, state *scheduler.State, req *scheduler.Request, decode *endpoint.Endpoint) bool {
	if d.params.NonCachedTokens <= 0 || req.Body == nil {
		return false
	}
	tokens := req.Body.EstimatedPromptTokens()
	if tokens < d.params.PromptTokens {
		return false
	}
	return tokens-d.cachedTokens(state, decode) >= d.params.NonCachedTokens
}

func (d *PrefixDecider) cachedTokens(state *scheduler.State, decode *endpoint.Endpoint) int {
	if d.source == nil || decode == nil {
		return 0
	}
	m, ok := d.source.Match(state)
	if !ok || m == nil {
		return 0
	}
	return m.Blocks(decode) * m.BlockSizeTokens
}

// Always disaggregates every request: always-disagg-pd-decider for the
// prefill, always-disagg-multimodal-decider (multimodal requests only) for
// the encoders.
type Always struct {
	name       scheduler.TypedName
	multimodal bool
}

func newAlways(typ, name string, raw json.RawMessage, multimodal bool) (scheduler.Plugin, error) {
	var p struct{}
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	return &Always{name: scheduler.TypedName{Type: typ, Name: name}, multimodal: multimodal}, nil
}

// The factories are named functions, not closures: the plugin docs file a
// type under its factory's package, which an inlined closure would hide.
func alwaysFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	return newAlways(AlwaysDeciderType, name, raw, false)
}

func multimodalFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	return newAlways(MultimodalDeciderType, name, raw, true)
}

// AlwaysDeciderRegistration describes always-disagg-pd-decider.
func AlwaysDeciderRegistration() scheduler.Registration {
	return scheduler.Registration{Type: AlwaysDeciderType, Factory: alwaysFactory, Params: struct{}{},
		Summary: "Disaggregates every request's stage (if its profile finds no endpoint, the decode endpoint runs it, counted)."}
}

// MultimodalDeciderRegistration describes always-disagg-multimodal-decider.
func MultimodalDeciderRegistration() scheduler.Registration {
	return scheduler.Registration{Type: MultimodalDeciderType, Factory: multimodalFactory, Params: struct{}{},
		Summary: "Disaggregates requests with image, audio or video content parts (image_url, audio_url, video_url, input_audio; input_image)."}
}

// TypedName implements scheduler.Plugin.
func (a *Always) TypedName() scheduler.TypedName { return a.name }

// Disaggregate implements Decider.
func (a *Always) Disaggregate(_ context.Context, _ *scheduler.State, req *scheduler.Request, _ *endpoint.Endpoint) bool {
	if !a.multimodal {
		return true
	}
	return req.Body != nil && Multimodal(req.Body.Prompt)
}

// multimodalParts are the content-part types an encoder handles: the chat
// API's four, and the Responses API's input_image (OpenEPP).
var multimodalParts = []string{"image_url", "audio_url", "video_url", "input_audio", "input_image"}

// Multimodal reports whether the prompt JSON (messages or input) holds a
// content part of a multimodal type. Text-only prompts, the common case,
// are told apart by a byte scan without decoding.
func Multimodal(prompt []byte) bool {
	found := false
	for _, t := range multimodalParts {
		if bytes.Contains(prompt, []byte(t)) {
			found = true
			break
		}
	}
	if !found {
		return false
	}
	var v any
	if json.Unmarshal(prompt, &v) != nil {
		return false
	}
	return hasPart(v)
}

func hasPart(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		if t, ok := x["type"].(string); ok {
			for _, p := range multimodalParts {
				if t == p {
					return true
				}
			}
		}
		for _, c := range x {
			if hasPart(c) {
				return true
			}
		}
	case []any:
		for _, c := range x {
			if hasPart(c) {
				return true
			}
		}
	}
	return false
}
