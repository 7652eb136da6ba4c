package config

import (
	"fmt"
	"strings"

	"github.com/openepp/openepp/pkg/scheduler"
)

// attachExtractors hands every newly built data source (scheduler.DataSource)
// the extractors dataLayer.sources pairs it with, in order. A reused source
// already has them: its key (buildKey) includes the pairing, so a
// changed pairing builds a new one.
func (b *builder) attachExtractors() {
	if b.cfg.DataLayer == nil {
		return
	}
	for i, s := range b.cfg.DataLayer.Sources {
		if s.Interval != nil {
			b.setInterval(i, s)
		}
		src, ok := b.instances[s.PluginRef].(scheduler.DataSource)
		if !ok || b.reused[s.PluginRef] {
			continue
		}
		for j, e := range s.Extractors {
			ex, built := b.instances[e.PluginRef]
			if !built {
				continue // reported already
			}
			if err := src.AddExtractor(ex); err != nil {
				b.ps.add(idx(at(idx("dataLayer.sources", i), "extractors"), j)+".pluginRef", "%v", err)
			}
		}
	}
}

// setInterval hands dataLayer.sources[i].interval to its source, which must
// take one; a reused source was built with it (the key includes it).
func (b *builder) setInterval(i int, s DataSource) {
	at := idx("dataLayer.sources", i) + ".interval"
	if s.Interval.Duration <= 0 {
		b.ps.add(at, "must be a positive duration, got %s", s.Interval.Duration)
		return
	}
	inst, built := b.instances[s.PluginRef]
	if !built || b.reused[s.PluginRef] {
		return
	}
	src, ok := inst.(scheduler.IntervalSource)
	if !ok {
		b.ps.add(at, "plugin %q (%s) takes no collection interval", s.PluginRef, inst.TypedName().Type)
		return
	}
	src.SetInterval(s.Interval.Duration)
}

// checkDataSources warns about data sources that collect for nobody: no
// dataLayer.sources entry pairs them with an extractor.
func (b *builder) checkDataSources() {
	fed := map[string]bool{}
	if d := b.cfg.DataLayer; d != nil {
		for _, s := range d.Sources {
			fed[s.PluginRef] = fed[s.PluginRef] || len(s.Extractors) > 0
		}
	}
	for i, spec := range b.cfg.Plugins {
		if b.kind(spec.Name).has(kindDataSource) && !fed[spec.Name] {
			b.warnings = append(b.warnings, fmt.Sprintf("plugins[%d]: data source %q collects nothing: "+
				"no dataLayer.sources entry pairs it with an extractor", i, spec.Name))
		}
	}
}

// buildKey identifies what the instance spec names is built from: its
// type and canonical parameters (instanceKey) and, for a data source, the
// extractors it feeds and what those are built from.
func (c *Config) buildKey(spec PluginSpec) string {
	key := instanceKey(spec)
	if c.DataLayer == nil {
		return key
	}
	var b strings.Builder
	b.WriteString(key)
	for _, s := range c.DataLayer.Sources {
		if s.PluginRef != spec.Name {
			continue
		}
		for _, e := range s.Extractors {
			b.WriteString("\x00" + e.PluginRef)
			if ex := c.plugin(e.PluginRef); ex != nil {
				b.WriteString("\x00" + instanceKey(*ex))
			}
		}
		if s.Interval != nil {
			b.WriteString("\x00interval=" + s.Interval.Duration.String())
		}
	}
	return b.String()
}
