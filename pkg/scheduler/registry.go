package scheduler

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/endpoint"
)

// Factory builds one plugin instance named name from its raw JSON parameters
// (nil when the config gives none). It must decode strictly and validate, and
// must not start goroutines (implement Runnable instead).
type Factory func(name string, params json.RawMessage, h *Handle) (Plugin, error)

// Registration describes one plugin type.
type Registration struct {
	// Type is the kebab-case type name used in config files.
	Type    string
	Factory Factory
	// Params is the zero value of the plugin's parameter struct (or nil); the
	// docs generator reads its fields, json tags and `doc` tags.
	Params any
	// Summary is one line for docs/plugins.md.
	Summary string
}

// Registry maps plugin types to factories. It is a value: the EPP builds one
// from the in-tree plugins plus any out-of-tree plugins it was given.
type Registry struct {
	byType map[string]Registration
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{byType: map[string]Registration{}} }

// Register adds a plugin type; registering a type twice is an error.
func (r *Registry) Register(reg Registration) error {
	if reg.Type == "" || reg.Factory == nil {
		return fmt.Errorf("register plugin: type and factory are required")
	}
	if _, dup := r.byType[reg.Type]; dup {
		return fmt.Errorf("register plugin %q: type already registered", reg.Type)
	}
	r.byType[reg.Type] = reg
	return nil
}

// Lookup returns the registration for typ.
func (r *Registry) Lookup(typ string) (Registration, bool) {
	reg, ok := r.byType[typ]
	return reg, ok
}

// Types lists the registered types, sorted.
func (r *Registry) Types() []string {
	types := make([]string, 0, len(r.byType))
	for t := range r.byType {
		types = append(types, t)
	}
	slices.Sort(types)
	return types
}

// Clock tells the time; tests inject a fake one.
type Clock interface{ Now() time.Time }

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// Handle gives factories and plugins access to the EPP's shared facilities.
type Handle struct {
	Log   logr.Logger
	Clock Clock
	// Endpoints returns the current pool; plugins with per-endpoint state use
	// it to forget endpoints that left.
	Endpoints func() []*endpoint.Endpoint
	// Registerer is where plugins register their own Prometheus collectors;
	// nil disables plugin metrics.
	Registerer prometheus.Registerer
	// StalenessThreshold is --metrics-staleness-threshold.
	StalenessThreshold time.Duration
	// UpstreamScoring asks plugins whose defaults improve on upstream's
	// formulas to default to upstream's exact behaviour instead
	// (--upstream-compatible-scoring); explicit parameters still win.
	UpstreamScoring bool
	// lookup finds another instance of the same config by name, and all
	// lists them in configuration order; set by the config builder before
	// Resolve is called.
	lookup func(name string) (Plugin, bool)
	all    []Plugin
}

// MetricsRegisterer is h's Registerer, nil for a nil handle.
func (h *Handle) MetricsRegisterer() prometheus.Registerer {
	if h == nil {
		return nil
	}
	return h.Registerer
}

// Plugin returns the instance called name in the same configuration.
func (h *Handle) Plugin(name string) (Plugin, bool) {
	if h.lookup == nil {
		return nil, false
	}
	return h.lookup(name)
}

// WithLookup returns a copy of h whose Plugin method resolves through lookup.
func (h *Handle) WithLookup(lookup func(name string) (Plugin, bool)) *Handle {
	c := *h
	c.lookup = lookup
	return &c
}

// Plugins returns the instances of the same configuration, in
// configuration order; nil for a nil handle or one without them.
func (h *Handle) Plugins() []Plugin {
	if h == nil {
		return nil
	}
	return h.all
}

// WithPlugins returns a copy of h whose Plugin and Plugins methods resolve
// among plugins, one configuration's instances in order; of two with one
// name, the first counts.
func (h *Handle) WithPlugins(plugins ...Plugin) *Handle {
	byName := make(map[string]Plugin, len(plugins))
	all := make([]Plugin, 0, len(plugins))
	for _, p := range plugins {
		if _, dup := byName[p.TypedName().Name]; !dup {
			byName[p.TypedName().Name] = p
			all = append(all, p)
		}
	}
	c := h.WithLookup(func(name string) (Plugin, bool) {
		p, ok := byName[name]
		return p, ok
	})
	c.all = all
	return c
}

// DecodeParams strictly decodes raw JSON parameters into dst (unknown fields
// are errors); nil or empty raw leaves dst untouched.
func DecodeParams(raw json.RawMessage, dst any) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return fmt.Errorf("parameters: %w", err)
	}
	return nil
}
