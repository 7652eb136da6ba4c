package config

import (
	"fmt"

	"github.com/openepp/openepp/pkg/scheduler"
)

// validateKinds checks the rules that depend on what each plugin is. Plugins
// that failed to build are already reported and skipped here, so one broken
// plugin does not cause a cascade of follow-on messages.
func (b *builder) validateKinds() {
	b.checkHandler()
	for i := range b.cfg.SchedulingProfiles {
		b.checkProfile(i)
	}
	b.checkDetector()
	b.checkFlowControl()
	b.checkDiscovery()
	b.checkDataSources()
	b.checkAttributes()
}

// checkAttributes refuses a plugin that reads a request attribute no
// configured plugin publishes: it would see "" on every request and, for
// session-affinity-scorer, keep no session at all without a word.
func (b *builder) checkAttributes() {
	published := map[string]bool{}
	for _, spec := range b.cfg.Plugins {
		if src, ok := b.instances[spec.Name].(scheduler.AttributeSource); ok {
			published[src.AttributeKey()] = true
		}
	}
	for i, spec := range b.cfg.Plugins {
		r, ok := b.instances[spec.Name].(scheduler.AttributeReader)
		if !ok {
			continue
		}
		for _, key := range r.AttributeKeys() {
			if !published[key] {
				b.ps.add(idx("plugins", i), "plugin %q reads the request attribute %q, which no configured plugin publishes (add the plugin that does, e.g. type %q for %q)",
					spec.Name, key, "agent-identity", "agent-identity")
			}
		}
	}
}

// detectorRef is the configured saturation detector, top level (GIE) or
// under flowControl (llm-d), with its path; validation has made sure two
// given references agree.
func (c *Config) detectorRef() (path, name string) {
	switch {
	case c.SaturationDetector != nil:
		return "saturationDetector.pluginRef", c.SaturationDetector.PluginRef
	case c.FlowControl != nil && c.FlowControl.SaturationDetector != nil:
		return "flowControl.saturationDetector.pluginRef", c.FlowControl.SaturationDetector.PluginRef
	}
	return "", ""
}

// checkDetector refuses a saturation detector reference to a plugin that
// cannot rate saturation: admission control would silently never shed.
func (b *builder) checkDetector() {
	path, name := b.cfg.detectorRef()
	if _, built := b.instances[name]; !built {
		return // no reference, a dangling one (reported), or an optional default skipped
	}
	if k := b.kind(name); !k.has(kindSaturation) {
		b.ps.add(path, "%q is %s, not a saturation detector", name, k)
	}
}

func (b *builder) checkHandler() {
	var handlers []int
	complete := true
	for i, spec := range b.cfg.Plugins {
		if _, ok := b.instances[spec.Name]; !ok && spec.origin != fromOptionalDefault {
			complete = false
		}
		if b.kind(spec.Name).has(kindHandler) {
			handlers = append(handlers, i)
		}
	}
	n := len(b.cfg.SchedulingProfiles)
	switch {
	case len(handlers) == 0 && complete:
		b.ps.add("schedulingProfiles", "a profile handler is required and none is configured (%d profiles)", n)
	case len(handlers) > 1:
		for _, i := range handlers[1:] {
			b.ps.add(idx("plugins", i), "second profile handler %q: exactly one is allowed (plugins[%d] is %q)",
				b.cfg.Plugins[i].Name, handlers[0], b.cfg.Plugins[handlers[0]].Name)
		}
	case len(handlers) == 1 && b.cfg.Plugins[handlers[0]].Type == singleProfileHandler && n > 1:
		b.ps.add(at(idx("plugins", handlers[0]), "type"), "%q runs exactly one profile, but %d are configured", singleProfileHandler, n)
	}
}

func (b *builder) checkProfile(i int) {
	p := b.cfg.SchedulingProfiles[i]
	path := at(idx("schedulingProfiles", i), "plugins")
	picker, complete := -1, true
	for j, pp := range p.Plugins {
		entry := idx(path, j)
		if _, ok := b.instances[pp.PluginRef]; !ok {
			complete = false
			continue
		}
		k := b.kind(pp.PluginRef)
		switch {
		case !k.has(kindProfile) && k.has(kindProducer):
			// llm-d's configs list producers in profiles; they run for
			// every request whatever the profile, so say so and go on.
			b.warnings = append(b.warnings, fmt.Sprintf("%s: %q is a producer, which runs for every request; listing it in a profile changes nothing",
				at(entry, "pluginRef"), pp.PluginRef))
			continue
		case !k.has(kindProfile):
			b.ps.add(at(entry, "pluginRef"), "%q is %s; a profile holds only filters, scorers and pickers", pp.PluginRef, k)
			continue
		case k.has(kindPicker) && picker >= 0:
			b.ps.add(at(entry, "pluginRef"), "second picker %q in this profile (plugins[%d] is %q); a profile has exactly one",
				pp.PluginRef, picker, p.Plugins[picker].PluginRef)
		case k.has(kindPicker):
			picker = j
		}
		if pp.Weight != nil && !k.has(kindScorer) {
			b.warnings = append(b.warnings, fmt.Sprintf("%s: ignored: %q is %s, not a scorer", at(entry, "weight"), pp.PluginRef, k))
		}
	}
	if picker < 0 && complete {
		b.ps.add(path, "no picker (the default %q is not a picker)", maxScorePicker)
	}
}

// discoveryRef is the plugin dataLayer.discovery names, or "".
func (c *Config) discoveryRef() string {
	if c.DataLayer == nil || c.DataLayer.Discovery == nil {
		return ""
	}
	return c.DataLayer.Discovery.PluginRef
}

// checkDiscovery keeps endpoint discovery plugins where they work: named by
// dataLayer.discovery, which must name one. The references with a kind
// check of their own (profiles, detector, policies) already refuse them;
// these have none. A discovery plugin named nowhere is only a warning.
func (b *builder) checkDiscovery() {
	const path = "dataLayer.discovery.pluginRef"
	ref := b.cfg.discoveryRef()
	b.checkRefKind(path, ref, kindDiscovery, "an endpoint discovery plugin")
	for _, r := range b.cfg.untypedRefs() {
		if b.kind(r.name).has(kindDiscovery) {
			b.ps.add(r.path, "%q is an endpoint discovery plugin; only %s may name it", r.name, path)
		}
	}
	for i, spec := range b.cfg.Plugins {
		if spec.Name != ref && b.kind(spec.Name).has(kindDiscovery) {
			b.warnings = append(b.warnings, fmt.Sprintf("plugins[%d]: endpoint discovery plugin %q does nothing: %s does not name it",
				i, spec.Name, path))
		}
	}
}

type namedRef struct{ path, name string }

// untypedRefs are the references whose target's kind Build does not check:
// data sources and extractors, parsers, peer discovery, the syncer.
func (c *Config) untypedRefs() []namedRef {
	var refs []namedRef
	if c.Parser != nil {
		refs = append(refs, namedRef{"parser.pluginRef", c.Parser.PluginRef})
	}
	if c.RequestHandler != nil {
		for i, r := range c.RequestHandler.Parsers {
			refs = append(refs, namedRef{idx("requestHandler.parsers", i) + ".pluginRef", r.PluginRef})
		}
	}
	d := c.DataLayer
	if d == nil {
		return refs
	}
	for i, s := range d.Sources {
		path := idx("dataLayer.sources", i)
		refs = append(refs, namedRef{at(path, "pluginRef"), s.PluginRef})
		for j, e := range s.Extractors {
			refs = append(refs, namedRef{idx(at(path, "extractors"), j) + ".pluginRef", e.PluginRef})
		}
	}
	if d.PeerDiscovery != nil {
		refs = append(refs, namedRef{"dataLayer.peerDiscovery.pluginRef", d.PeerDiscovery.PluginRef})
	}
	if d.CrossReplicaSyncerPluginRef != "" {
		refs = append(refs, namedRef{"dataLayer.crossReplicaSyncerPluginRef", d.CrossReplicaSyncerPluginRef})
	}
	return refs
}
