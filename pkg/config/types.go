package config

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

// The accepted apiVersions: GIE's and llm-d's spellings of the same schema
// (llm-d's guides moved from v1alpha1 to v1; the two are the same file).
const (
	APIVersionGIE    = "inference.networking.x-k8s.io/v1alpha1"
	APIVersionLLMD   = "llm-d.ai/v1alpha1"
	APIVersionLLMDV1 = "llm-d.ai/v1"
	// Kind is the only accepted kind.
	Kind = "EndpointPickerConfig"
)

// llmdFlavor reports whether apiVersion is one of llm-d's, whose files get
// llm-d's defaults where the two projects differ.
func llmdFlavor(apiVersion string) bool {
	return apiVersion == APIVersionLLMD || apiVersion == APIVersionLLMDV1
}

// LLMDFlavor reports whether the file is llm-d's (its apiVersion), whose
// defaults the EPP follows where the two projects differ.
func (c *Config) LLMDFlavor() bool { return llmdFlavor(c.APIVersion) }

// Config is the upstream EndpointPickerConfig file. Sections OpenEPP does not
// act on yet (flow control, parsers, most of the data layer) are decoded and
// validated anyway, so upstream files load as they are and later work can
// read them from here.
type Config struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// FeatureGates enable optional features: "gate", "gate=true" or
	// "gate=false" (llm-d forms; GIE lists names only).
	FeatureGates []string `json:"featureGates,omitempty"`
	// Plugins are the instances to build, referenced by name elsewhere.
	Plugins []PluginSpec `json:"plugins"`
	// SchedulingProfiles are the filter → score → pick pipelines.
	SchedulingProfiles []ProfileSpec `json:"schedulingProfiles,omitempty"`
	// SaturationDetector is GIE's top-level detector reference (llm-d moved
	// it to FlowControl.SaturationDetector).
	SaturationDetector *PluginRef `json:"saturationDetector,omitempty"`
	// Parser is GIE's request parser; RequestHandler is llm-d's form.
	Parser         *PluginRef      `json:"parser,omitempty"`
	RequestHandler *RequestHandler `json:"requestHandler,omitempty"`
	// DataLayer names the endpoint data sources. Absent means the default
	// metrics source; present but empty means no collection.
	DataLayer   *DataLayer   `json:"dataLayer,omitempty"`
	FlowControl *FlowControl `json:"flowControl,omitempty"`
}

// origin records who put a plugin into the config, which decides what Build
// may do when its type is not registered.
type origin uint8

const (
	// fromUser plugins were written in the file; an unregistered type is an
	// error.
	fromUser origin = iota
	// fromDefault plugins were added by defaulting because scheduling needs
	// them (handler, picker, prefix producer); an unregistered type is an
	// error too.
	fromDefault
	// fromOptionalDefault plugins were added by defaulting for sections
	// OpenEPP does not act on yet (data layer, saturation detector, parser,
	// flow-control policies); an unregistered type is skipped with a warning.
	fromOptionalDefault
)

// PluginSpec declares one plugin instance.
type PluginSpec struct {
	// Name defaults to Type.
	Name string `json:"name,omitempty"`
	Type string `json:"type"`
	// Parameters are passed to the plugin's factory undecoded.
	Parameters json.RawMessage `json:"parameters,omitempty"`

	origin origin
}

// ProfileSpec is one scheduling profile.
type ProfileSpec struct {
	Name    string          `json:"name"`
	Plugins []ProfilePlugin `json:"plugins"`
}

// ProfilePlugin places a filter, scorer or picker in a profile.
type ProfilePlugin struct {
	PluginRef string `json:"pluginRef"`
	// Weight applies to scorers only and defaults to 1.
	Weight *float64 `json:"weight,omitempty"`
}

// PluginRef names a plugin instance.
type PluginRef struct {
	PluginRef string `json:"pluginRef"`
}

// RequestHandler is llm-d's request-handling section.
type RequestHandler struct {
	Parsers []PluginRef `json:"parsers"`
}

// DataLayer lists the endpoint data sources and their extractors.
type DataLayer struct {
	Sources []DataSource `json:"sources,omitempty"`
	// InjectDefaults (llm-d) adds the default metrics source even when the
	// section is present; it defaults to true for llm-d.ai files and false
	// for GIE files, where an explicit section replaces the default.
	InjectDefaults *bool `json:"injectDefaults,omitempty"`
	// The remaining fields are llm-d's.
	Discovery                   *PluginRef `json:"discovery,omitempty"`
	PeerDiscovery               *PluginRef `json:"peerDiscovery,omitempty"`
	CrossReplicaSyncerPluginRef string     `json:"crossReplicaSyncerPluginRef,omitempty"`
	CrossReplicaSyncInterval    *Duration  `json:"crossReplicaSyncInterval,omitempty"`
	CrossReplicaPublishTimeout  *Duration  `json:"crossReplicaPublishTimeout,omitempty"`
}

// DataSource is one data source with the extractors fed by it.
type DataSource struct {
	PluginRef  string      `json:"pluginRef"`
	Extractors []PluginRef `json:"extractors,omitempty"`
	// Interval (llm-d) is how often the source collects, for sources that
	// take one (scheduler.IntervalSource); omitted: the plugin's own.
	Interval *Duration `json:"interval,omitempty"`
}

// FlowControl configures queueing in the EPP (feature gate flowControl).
// Zero or omitted limits mean unlimited.
type FlowControl struct {
	MaxBytes    *resource.Quantity `json:"maxBytes,omitempty"`
	MaxRequests *resource.Quantity `json:"maxRequests,omitempty"`
	// DefaultRequestTTL: 0 means only the client deadline applies.
	DefaultRequestTTL *Duration `json:"defaultRequestTTL,omitempty"`
	// NoEndpointRequestTTL (llm-d) bounds waiting while the pool is empty.
	NoEndpointRequestTTL        *Duration      `json:"noEndpointRequestTTL,omitempty"`
	DefaultPriorityBand         *PriorityBand  `json:"defaultPriorityBand,omitempty"`
	DefaultNegativePriorityBand *PriorityBand  `json:"defaultNegativePriorityBand,omitempty"`
	PriorityBands               []PriorityBand `json:"priorityBands,omitempty"`
	UsageLimitPolicyPluginRef   string         `json:"usageLimitPolicyPluginRef,omitempty"`
	// SaturationDetector (llm-d) replaces the top-level field.
	SaturationDetector *PluginRef `json:"saturationDetector,omitempty"`
	EnableEviction     *bool      `json:"enableEviction,omitempty"`
}

// PriorityBand configures the queues of one priority level.
type PriorityBand struct {
	// Priority is required in priorityBands and ignored in the default bands.
	Priority          *int               `json:"priority,omitempty"`
	MaxBytes          *resource.Quantity `json:"maxBytes,omitempty"`
	MaxRequests       *resource.Quantity `json:"maxRequests,omitempty"`
	FairnessPolicyRef string             `json:"fairnessPolicyRef,omitempty"`
	OrderingPolicyRef string             `json:"orderingPolicyRef,omitempty"`
}

// Duration is a Go duration written as a string ("60s", "5m").
type Duration struct {
	time.Duration
}

// UnmarshalJSON accepts a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("must be a duration string such as \"60s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: must look like \"60s\" or \"1m30s\"", s)
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// Clone returns a deep copy of c; Build works on a copy so the caller's
// Config is never changed.
func (c *Config) Clone() *Config {
	out := *c
	out.FeatureGates = slices.Clone(c.FeatureGates)
	out.Plugins = slices.Clone(c.Plugins)
	for i := range out.Plugins {
		out.Plugins[i].Parameters = slices.Clone(c.Plugins[i].Parameters)
	}
	out.SchedulingProfiles = slices.Clone(c.SchedulingProfiles)
	for i, p := range out.SchedulingProfiles {
		out.SchedulingProfiles[i].Plugins = slices.Clone(p.Plugins)
		for j := range p.Plugins {
			out.SchedulingProfiles[i].Plugins[j].Weight = ptrCopy(p.Plugins[j].Weight)
		}
	}
	out.SaturationDetector = ptrCopy(c.SaturationDetector)
	out.Parser = ptrCopy(c.Parser)
	if c.RequestHandler != nil {
		out.RequestHandler = &RequestHandler{Parsers: slices.Clone(c.RequestHandler.Parsers)}
	}
	out.DataLayer = c.DataLayer.clone()
	out.FlowControl = c.FlowControl.clone()
	return &out
}

func (d *DataLayer) clone() *DataLayer {
	if d == nil {
		return nil
	}
	out := *d
	out.Sources = slices.Clone(d.Sources)
	for i := range out.Sources {
		out.Sources[i].Extractors = slices.Clone(d.Sources[i].Extractors)
	}
	out.InjectDefaults = ptrCopy(d.InjectDefaults)
	out.Discovery = ptrCopy(d.Discovery)
	out.PeerDiscovery = ptrCopy(d.PeerDiscovery)
	out.CrossReplicaSyncInterval = ptrCopy(d.CrossReplicaSyncInterval)
	out.CrossReplicaPublishTimeout = ptrCopy(d.CrossReplicaPublishTimeout)
	return &out
}

func (f *FlowControl) clone() *FlowControl {
	if f == nil {
		return nil
	}
	out := *f
	out.MaxBytes = quantityCopy(f.MaxBytes)
	out.MaxRequests = quantityCopy(f.MaxRequests)
	out.DefaultRequestTTL = ptrCopy(f.DefaultRequestTTL)
	out.NoEndpointRequestTTL = ptrCopy(f.NoEndpointRequestTTL)
	out.DefaultPriorityBand = f.DefaultPriorityBand.clone()
	out.DefaultNegativePriorityBand = f.DefaultNegativePriorityBand.clone()
	out.PriorityBands = slices.Clone(f.PriorityBands)
	for i := range out.PriorityBands {
		out.PriorityBands[i] = *f.PriorityBands[i].clone()
	}
	out.SaturationDetector = ptrCopy(f.SaturationDetector)
	out.EnableEviction = ptrCopy(f.EnableEviction)
	return &out
}

func (b *PriorityBand) clone() *PriorityBand {
	if b == nil {
		return nil
	}
	out := *b
	out.Priority = ptrCopy(b.Priority)
	out.MaxBytes = quantityCopy(b.MaxBytes)
	out.MaxRequests = quantityCopy(b.MaxRequests)
	return &out
}

func ptrCopy[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func quantityCopy(q *resource.Quantity) *resource.Quantity {
	if q == nil {
		return nil
	}
	v := q.DeepCopy()
	return &v
}

// plugin returns the spec named name, or nil.
func (c *Config) plugin(name string) *PluginSpec {
	for i := range c.Plugins {
		if c.Plugins[i].Name == name {
			return &c.Plugins[i]
		}
	}
	return nil
}
