package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"github.com/openepp/openepp/pkg/scheduler"
)

// instanceKey identifies what a plugin instance was built from: its type
// and canonical parameters (key order and whitespace do not matter).
func instanceKey(spec PluginSpec) string {
	return spec.Type + "\x00" + canonicalJSON(spec.Parameters)
}

// canonicalJSON re-encodes raw with sorted keys and no whitespace; absent,
// null and empty-object parameters are all "". Undecodable input is kept as
// is.
func canonicalJSON(raw json.RawMessage) string {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		return ""
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return string(trimmed)
	}
	if m, ok := v.(map[string]any); ok && len(m) == 0 {
		return ""
	}
	out, err := json.Marshal(v)
	if err != nil {
		return string(trimmed)
	}
	return string(out)
}

// hashOf is a short, stable identifier of a configuration's content.
func hashOf(cfg *Config) string {
	data, err := json.Marshal(cfg)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

// reusable returns the previous build's instance for spec when nothing that
// built it changed, else nil.
func (b *builder) reusable(spec PluginSpec) scheduler.Plugin {
	if b.prev == nil {
		return nil
	}
	p, ok := b.prev.byName[spec.Name]
	if !ok || b.prev.keys[spec.Name] != b.cfg.buildKey(spec) {
		return nil
	}
	if _, resolver := p.(scheduler.Resolver); resolver {
		return nil
	}
	return p
}

// inherit hands each new instance that implements scheduler.Inheritor the
// previous build's instance of the same name and type.
func (b *builder) inherit() {
	if b.prev == nil {
		return
	}
	for _, spec := range b.cfg.Plugins {
		heir, ok := b.instances[spec.Name].(scheduler.Inheritor)
		if !ok || b.reused[spec.Name] {
			continue
		}
		if old, ok := b.prev.byName[spec.Name]; ok && old.TypedName().Type == spec.Type {
			heir.Inherit(old)
			b.heirs[spec.Name] = true
		}
	}
}

// Rebuilt lists, in config order, the instances this build made anew
// because their type or parameters changed since prev, which had one of
// that name (resolvers, always rebuilt, are listed only when changed too).
// kept lists those among them that took over their predecessor's state
// (scheduler.Inheritor); the others start afresh. Both are empty without a
// previous build. The EPP logs them at a reload.
func (b *Built) Rebuilt(prev *Built) (rebuilt, kept []string) {
	if prev == nil {
		return nil, nil
	}
	for _, spec := range b.Config.Plugins {
		key, built := b.keys[spec.Name]
		if old, had := prev.keys[spec.Name]; !built || !had || old == key {
			continue
		}
		rebuilt = append(rebuilt, spec.Name)
		if b.heirs[spec.Name] {
			kept = append(kept, spec.Name)
		}
	}
	return rebuilt, kept
}

// Changes compares b with prev, the build it replaces (the Previous given
// to BuildWith): start lists b's runnables that are new instances (reused
// ones are already running), stop lists prev's runnables whose instance b
// does not carry over. A nil prev starts everything.
func (b *Built) Changes(prev *Built) (start, stop []NamedRunnable) {
	for _, r := range b.Runnables {
		if prev == nil || !b.reused[r.Name] {
			start = append(start, r)
		}
	}
	if prev == nil {
		return start, nil
	}
	for _, r := range prev.Runnables {
		if !b.reused[r.Name] {
			stop = append(stop, r)
		}
	}
	return start, stop
}
