package config

import (
	"encoding/json"
	"math"

	"k8s.io/apimachinery/pkg/api/resource"
)

// validate checks everything that needs no plugin registry: the header,
// feature gates, names, references and value ranges. Rules that depend on
// what a plugin is (handler count, profile contents) are checked by Build.
func validate(cfg *Config) error { return schemaProblems(cfg).err() }

func schemaProblems(cfg *Config) problems {
	var ps problems
	validateHeader(&ps, cfg)
	validateGates(&ps, cfg)
	names := validatePlugins(&ps, cfg)
	validateProfiles(&ps, cfg, names)
	validateSections(&ps, cfg, names)
	validateFlowControl(&ps, cfg.FlowControl, names)
	return ps
}

func validateHeader(ps *problems, cfg *Config) {
	switch cfg.APIVersion {
	case APIVersionGIE, APIVersionLLMD, APIVersionLLMDV1:
	case "":
		ps.add("apiVersion", "required (%q, %q or %q)", APIVersionGIE, APIVersionLLMDV1, APIVersionLLMD)
	default:
		ps.add("apiVersion", "unsupported %q (supported: %q, %q, %q)", cfg.APIVersion, APIVersionGIE, APIVersionLLMDV1, APIVersionLLMD)
	}
	switch cfg.Kind {
	case Kind:
	case "":
		ps.add("kind", "required (%q)", Kind)
	default:
		ps.add("kind", "must be %q, got %q", Kind, cfg.Kind)
	}
}

// validatePlugins checks the plugin list and returns the index of each name.
func validatePlugins(ps *problems, cfg *Config) map[string]int {
	names := map[string]int{}
	user := 0
	for i, spec := range cfg.Plugins {
		path := idx("plugins", i)
		if spec.origin == fromUser {
			user++
		}
		if spec.Type == "" {
			ps.add(at(path, "type"), "required")
		}
		if len(spec.Parameters) > 0 && !json.Valid(spec.Parameters) {
			ps.add(at(path, "parameters"), "invalid JSON")
		}
		if spec.Name == "" {
			continue // only when type is missing too; reported above
		}
		if j, dup := names[spec.Name]; dup {
			ps.add(at(path, "name"), "duplicate name %q (also plugins[%d])", spec.Name, j)
			continue
		}
		names[spec.Name] = i
	}
	if user == 0 {
		ps.add("plugins", "at least one plugin is required")
	}
	return names
}

func validateProfiles(ps *problems, cfg *Config, names map[string]int) {
	seen := map[string]int{}
	for i, p := range cfg.SchedulingProfiles {
		path := idx("schedulingProfiles", i)
		switch j, dup := seen[p.Name]; {
		case p.Name == "":
			ps.add(at(path, "name"), "required")
		case dup:
			ps.add(at(path, "name"), "duplicate profile name %q (also schedulingProfiles[%d])", p.Name, j)
		default:
			seen[p.Name] = i
		}
		refs := map[string]int{}
		for j, pp := range p.Plugins {
			entry := idx(at(path, "plugins"), j)
			if k, dup := refs[pp.PluginRef]; dup && pp.PluginRef != "" {
				ps.add(at(entry, "pluginRef"), "%q is already in this profile (plugins[%d])", pp.PluginRef, k)
			}
			refs[pp.PluginRef] = j
			checkRef(ps, at(entry, "pluginRef"), pp.PluginRef, names)
			checkWeight(ps, at(entry, "weight"), pp.Weight)
		}
	}
}

func checkWeight(ps *problems, path string, w *float64) {
	switch {
	case w == nil:
	case math.IsNaN(*w) || math.IsInf(*w, 0):
		ps.add(path, "must be a finite number, got %v", *w)
	case *w <= 0:
		ps.add(path, "must be > 0")
	}
}

// checkRef reports a missing or dangling reference.
func checkRef(ps *problems, path, ref string, names map[string]int) {
	if ref == "" {
		ps.add(path, "required")
		return
	}
	if _, ok := names[ref]; !ok {
		ps.add(path, "no plugin named %q", ref)
	}
}

// checkOptionalRef is checkRef for fields that may be left empty.
func checkOptionalRef(ps *problems, path, ref string, names map[string]int) {
	if ref != "" {
		checkRef(ps, path, ref, names)
	}
}

func validateSections(ps *problems, cfg *Config, names map[string]int) {
	if r := cfg.SaturationDetector; r != nil {
		checkRef(ps, "saturationDetector.pluginRef", r.PluginRef, names)
		if fc := cfg.FlowControl; fc != nil && fc.SaturationDetector != nil && fc.SaturationDetector.PluginRef != r.PluginRef {
			ps.add("saturationDetector", "conflicts with flowControl.saturationDetector (%q vs %q); set one", r.PluginRef, fc.SaturationDetector.PluginRef)
		}
	}
	if cfg.Parser != nil {
		checkRef(ps, "parser.pluginRef", cfg.Parser.PluginRef, names)
		if cfg.RequestHandler != nil {
			ps.add("parser", "cannot be combined with requestHandler.parsers; set one")
		}
	}
	if cfg.RequestHandler != nil {
		for i, r := range cfg.RequestHandler.Parsers {
			checkRef(ps, idx("requestHandler.parsers", i)+".pluginRef", r.PluginRef, names)
		}
	}
	validateDataLayer(ps, cfg.DataLayer, names)
}

func validateDataLayer(ps *problems, d *DataLayer, names map[string]int) {
	if d == nil {
		return
	}
	seen := map[string]int{}
	for i, s := range d.Sources {
		path := idx("dataLayer.sources", i)
		checkRef(ps, at(path, "pluginRef"), s.PluginRef, names)
		if j, dup := seen[s.PluginRef]; dup && s.PluginRef != "" {
			ps.add(at(path, "pluginRef"), "source %q is already listed (dataLayer.sources[%d])", s.PluginRef, j)
		}
		seen[s.PluginRef] = i
		for j, e := range s.Extractors {
			checkRef(ps, idx(at(path, "extractors"), j)+".pluginRef", e.PluginRef, names)
		}
	}
	if d.Discovery != nil {
		checkRef(ps, "dataLayer.discovery.pluginRef", d.Discovery.PluginRef, names)
	}
	if d.PeerDiscovery != nil {
		checkRef(ps, "dataLayer.peerDiscovery.pluginRef", d.PeerDiscovery.PluginRef, names)
	}
	checkOptionalRef(ps, "dataLayer.crossReplicaSyncerPluginRef", d.CrossReplicaSyncerPluginRef, names)
	checkDuration(ps, "dataLayer.crossReplicaSyncInterval", d.CrossReplicaSyncInterval)
	checkDuration(ps, "dataLayer.crossReplicaPublishTimeout", d.CrossReplicaPublishTimeout)
}

func validateFlowControl(ps *problems, fc *FlowControl, names map[string]int) {
	if fc == nil {
		return
	}
	const path = "flowControl"
	checkQuantity(ps, at(path, "maxBytes"), fc.MaxBytes)
	checkQuantity(ps, at(path, "maxRequests"), fc.MaxRequests)
	checkDuration(ps, at(path, "defaultRequestTTL"), fc.DefaultRequestTTL)
	checkDuration(ps, at(path, "noEndpointRequestTTL"), fc.NoEndpointRequestTTL)
	checkBand(ps, at(path, "defaultPriorityBand"), fc.DefaultPriorityBand, names)
	checkBand(ps, at(path, "defaultNegativePriorityBand"), fc.DefaultNegativePriorityBand, names)
	seen := map[int]int{}
	for i := range fc.PriorityBands {
		b := &fc.PriorityBands[i]
		bp := idx(at(path, "priorityBands"), i)
		checkBand(ps, bp, b, names)
		switch j, dup := seen[deref(b.Priority)]; {
		case b.Priority == nil:
			ps.add(at(bp, "priority"), "required")
		case dup:
			ps.add(at(bp, "priority"), "duplicate priority %d (also priorityBands[%d])", *b.Priority, j)
		default:
			seen[*b.Priority] = i
		}
	}
	checkOptionalRef(ps, at(path, "usageLimitPolicyPluginRef"), fc.UsageLimitPolicyPluginRef, names)
	if fc.SaturationDetector != nil {
		checkRef(ps, at(path, "saturationDetector.pluginRef"), fc.SaturationDetector.PluginRef, names)
	}
}

func checkBand(ps *problems, path string, b *PriorityBand, names map[string]int) {
	if b == nil {
		return
	}
	checkQuantity(ps, at(path, "maxBytes"), b.MaxBytes)
	checkQuantity(ps, at(path, "maxRequests"), b.MaxRequests)
	checkOptionalRef(ps, at(path, "fairnessPolicyRef"), b.FairnessPolicyRef, names)
	checkOptionalRef(ps, at(path, "orderingPolicyRef"), b.OrderingPolicyRef, names)
}

// checkQuantity accepts whole, non-negative amounts ("10Gi", "1k", 5000).
func checkQuantity(ps *problems, path string, q *resource.Quantity) {
	if q == nil {
		return
	}
	if q.Sign() < 0 {
		ps.add(path, "must be >= 0, got %s", q)
		return
	}
	if _, ok := q.AsInt64(); !ok {
		ps.add(path, "must be a whole number that fits in 64 bits, got %s", q)
	}
}

func checkDuration(ps *problems, path string, d *Duration) {
	if d != nil && d.Duration < 0 {
		ps.add(path, "must be >= 0, got %s", d)
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
