package filters

import (
	"context"
	"encoding/json"
	"slices"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// The role filters split one pool of disaggregated-serving pods (llm-d) by
// the stage they can run. They are one file because they are one rule with
// three role sets.
const (
	// DecodeType is the type name of the filter returned by NewDecode.
	DecodeType = "decode-filter"
	// PrefillType is the type name of the filter returned by NewPrefill.
	PrefillType = "prefill-filter"
	// EncodeType is the type name of the filter returned by NewEncode.
	EncodeType = "encode-filter"
)

// RoleLabel is the pod label naming the stages a model server runs.
const RoleLabel = "llm-d.ai/role"

// Role values that run each stage. "both" is the deprecated spelling of
// "prefill-decode"; "encode-decode" runs no prefill and is therefore only a
// decoder.
var (
	decodeRoles  = []string{"decode", "prefill-decode", "both", "encode-prefill-decode"}
	prefillRoles = []string{"prefill", "encode-prefill", "prefill-decode", "both", "encode-prefill-decode"}
	encodeRoles  = []string{"encode", "encode-prefill", "encode-prefill-decode"}
)

// RoleParams is empty: the role filters take no parameters, and strict
// decoding rejects any given.
type RoleParams struct{}

func (p *RoleParams) validate() error { return nil }

// Role keeps the endpoints whose llm-d.ai/role label names a role that runs
// its stage.
//
// Inputs: the llm-d.ai/role endpoint label. No parameters. Rule, by type:
//   - decode-filter keeps decode, prefill-decode, both, encode-prefill-decode,
//     and endpoints without the label (a plain, non-disaggregated pod decodes);
//   - prefill-filter keeps prefill, encode-prefill, prefill-decode, both,
//     encode-prefill-decode;
//   - encode-filter keeps encode, encode-prefill, encode-prefill-decode.
//
// Values match exactly (case-sensitive). A label that is present but empty
// is not "without the label" and is dropped by all three.
type Role struct {
	name scheduler.TypedName
	// admitted are the stages of roleSet that pass: the filter's stage,
	// and unlabelled endpoints for decode.
	admitted roleSet
}

// roleSet is what an endpoint's role label says it runs, read once per
// endpoint (endpoint.Derive): a P/D request runs two role filters over
// every candidate.
type roleSet uint8

const (
	runsDecode roleSet = 1 << iota
	runsPrefill
	runsEncode
	unlabelled
)

var rolesKey endpoint.DerivedKey[roleSet]

// rolesOf reads e's role label.
func rolesOf(e *endpoint.Endpoint) roleSet {
	role, ok := e.Labels[RoleLabel]
	if !ok {
		return unlabelled
	}
	var rs roleSet
	for bit, roles := range map[roleSet][]string{runsDecode: decodeRoles, runsPrefill: prefillRoles, runsEncode: encodeRoles} {
		if slices.Contains(roles, role) {
			rs |= bit
		}
	}
	return rs
}

var _ scheduler.Filter = (*Role)(nil)

// NewDecode returns the decode-filter.
func NewDecode(name string, _ RoleParams) *Role {
	return &Role{name: scheduler.TypedName{Type: DecodeType, Name: name}, admitted: runsDecode | unlabelled}
}

// NewPrefill returns the prefill-filter.
func NewPrefill(name string, _ RoleParams) *Role {
	return &Role{name: scheduler.TypedName{Type: PrefillType, Name: name}, admitted: runsPrefill}
}

// NewEncode returns the encode-filter.
func NewEncode(name string, _ RoleParams) *Role {
	return &Role{name: scheduler.TypedName{Type: EncodeType, Name: name}, admitted: runsEncode}
}

// roleFactory adapts one of the constructors above to scheduler.Factory.
func roleFactory(newRole func(string, RoleParams) *Role) scheduler.Factory {
	return func(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
		var p RoleParams
		if err := scheduler.DecodeParams(raw, &p); err != nil {
			return nil, err
		}
		if err := p.validate(); err != nil {
			return nil, err
		}
		return newRole(name, p), nil
	}
}

// DecodeFactory builds the decode-filter from config.
func DecodeFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	return roleFactory(NewDecode)(name, raw, h)
}

// PrefillFactory builds the prefill-filter from config.
func PrefillFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	return roleFactory(NewPrefill)(name, raw, h)
}

// EncodeFactory builds the encode-filter from config.
func EncodeFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	return roleFactory(NewEncode)(name, raw, h)
}

// DecodeRegistration describes the decode-filter type for the registry.
func DecodeRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type: DecodeType, Factory: DecodeFactory, Params: RoleParams{},
		Summary: "Keeps decode-capable endpoints by the llm-d.ai/role label; endpoints without the label pass.",
	}
}

// PrefillRegistration describes the prefill-filter type for the registry.
func PrefillRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type: PrefillType, Factory: PrefillFactory, Params: RoleParams{},
		Summary: "Keeps prefill-capable endpoints by the llm-d.ai/role label.",
	}
}

// EncodeRegistration describes the encode-filter type for the registry.
func EncodeRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type: EncodeType, Factory: EncodeFactory, Params: RoleParams{},
		Summary: "Keeps encode-capable endpoints by the llm-d.ai/role label.",
	}
}

// TypedName implements scheduler.Plugin.
func (f *Role) TypedName() scheduler.TypedName { return f.name }

// Filter implements scheduler.Filter.
func (f *Role) Filter(_ context.Context, _ *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint) []*endpoint.Endpoint {
	return keep(eps, f.admits)
}

func (f *Role) admits(e *endpoint.Endpoint) bool {
	return endpoint.Derive(e, &rolesKey, rolesOf)&f.admitted != 0
}
