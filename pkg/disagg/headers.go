package disagg

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/openepp/openepp/pkg/scheduler"
)

// Type names of llm-d's deprecated PreRequest plugin that wrote the stage
// headers before disagg-profile-handler did so itself.
const (
	// HeadersType is the type name of Headers.
	HeadersType = "disagg-headers-handler"
	// PrefillHeaderType is the older alias of HeadersType.
	PrefillHeaderType = "prefill-header-handler"
)

// HeadersParams are llm-d's parameters of the deprecated header handler.
type HeadersParams struct {
	PrefillProfile string `json:"prefillProfile" doc:"the profile whose pick is named in x-prefiller-host-port; named explicitly, it must exist" default:"prefill"`
	EncodeProfile  string `json:"encodeProfile" doc:"the profile whose picks are named in x-encoder-hosts-ports; named explicitly, it must exist" default:"encode"`
}

// Headers is llm-d's deprecated disagg-headers-handler (alias
// prefill-header-handler), kept so configs that list it load. It writes the
// stage headers only where no profile handler of this package does.
//
// Inputs: the scheduling result and whether a disagg-profile-handler (or
// pd-profile-handler) scheduled the request. Parameters: prefillProfile
// ("prefill") and encodeProfile ("encode"); a profile named explicitly must
// exist in the config (the build fails otherwise, as for the profile
// handler), a default name that does not exist turns its header off.
//
// Rule: when a disagg-profile-handler or pd-profile-handler scheduled the
// request, do nothing: that handler already set or stripped both headers
// from its own profile names, and a second writer could only disagree with
// it. Otherwise (another profile handler, e.g. an out-of-tree one), set
// x-prefiller-host-port to the first target of prefillProfile and
// x-encoder-hosts-ports to the targets of encodeProfile, when that profile
// ran, picked something and is not the primary profile (the destination
// never prefills for itself); else strip the header, so a client cannot
// name a prefiller itself.
type Headers struct {
	name     scheduler.TypedName
	prefill  string
	encode   string
	explicit []string
}

var (
	_ scheduler.PreRequest  = (*Headers)(nil)
	_ scheduler.ProfileUser = (*Headers)(nil)
)

// NewHeaders returns the handler of type typ (HeadersType or
// PrefillHeaderType) called name.
func NewHeaders(typ, name string, p HeadersParams) *Headers {
	h := &Headers{name: scheduler.TypedName{Type: typ, Name: name}, prefill: StagePrefill, encode: StageEncode}
	if p.PrefillProfile != "" {
		h.prefill = p.PrefillProfile
		h.explicit = append(h.explicit, p.PrefillProfile)
	}
	if p.EncodeProfile != "" {
		h.encode = p.EncodeProfile
		h.explicit = append(h.explicit, p.EncodeProfile)
	}
	return h
}

// HeadersFactory builds disagg-headers-handler from config.
func HeadersFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	return buildHeaders(HeadersType, name, raw, h)
}

// PrefillHeaderFactory builds prefill-header-handler from config.
func PrefillHeaderFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	return buildHeaders(PrefillHeaderType, name, raw, h)
}

// buildHeaders builds the handler of type typ, logging that the type is
// deprecated. (Named factories, not closures: the docs generator files a
// type under the package its factory's name shows.)
func buildHeaders(typ, name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	var p HeadersParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if h != nil {
		h.Log.Info("warning: "+typ+" is deprecated: disagg-profile-handler (and pd-profile-handler) set x-prefiller-host-port "+
			"and x-encoder-hosts-ports themselves, so this plugin does nothing for the requests they schedule; remove it",
			"plugin", name)
	}
	return NewHeaders(typ, name, p), nil
}

// HeadersRegistration describes disagg-headers-handler for the registry.
func HeadersRegistration() scheduler.Registration {
	return scheduler.Registration{Type: HeadersType, Factory: HeadersFactory, Params: HeadersParams{},
		Summary: "Deprecated (llm-d): disagg-profile-handler sets the stage headers itself; this only sets x-prefiller-host-port " +
			"and x-encoder-hosts-ports for requests another profile handler scheduled."}
}

// PrefillHeaderRegistration describes the older alias prefill-header-handler.
func PrefillHeaderRegistration() scheduler.Registration {
	return scheduler.Registration{Type: PrefillHeaderType, Factory: PrefillHeaderFactory, Params: HeadersParams{},
		Summary: "Deprecated (llm-d): the older name of disagg-headers-handler."}
}

// TypedName implements scheduler.Plugin.
func (h *Headers) TypedName() scheduler.TypedName { return h.name }

// RequiredProfiles implements scheduler.ProfileUser: the profiles named
// explicitly.
func (h *Headers) RequiredProfiles() []string { return h.explicit }

// PreRequest implements scheduler.PreRequest; see the type's rule.
func (h *Headers) PreRequest(_ context.Context, state *scheduler.State, _ *scheduler.Request, result *scheduler.Result) {
	if result == nil {
		return
	}
	if state != nil {
		if _, ours := planKey.Get(state); ours {
			return // a Handler scheduled the request and writes the headers
		}
	}
	if addrs := h.stage(result, h.prefill); len(addrs) > 0 {
		result.SetHeader(PrefillerHeader, addrs[0])
	} else {
		result.RemoveHeader(PrefillerHeader)
	}
	if addrs := h.stage(result, h.encode); len(addrs) > 0 {
		result.SetHeader(EncodersHeader, strings.Join(addrs, ","))
	} else {
		result.RemoveHeader(EncodersHeader)
	}
}

// stage returns the addresses profile picked, none when it did not run,
// picked nothing, or is the primary profile.
func (h *Headers) stage(result *scheduler.Result, profile string) []string {
	p := result.Profiles[profile]
	if profile == result.Primary || p == nil {
		return nil
	}
	addrs := make([]string, len(p.Targets))
	for i, t := range p.Targets {
		addrs[i] = t.HostPort
	}
	return addrs
}
