package config

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// knownGates are the feature gates GIE v1.5.0 and llm-d define, with their
// default values. dataLayer and prepareDataPlugins (an earlier GIE gate its
// latency-routing guides still list) are accepted for compatibility and do
// nothing: the data layer and data producers always run.
var knownGates = map[string]bool{
	"dataLayer":                    false,
	"prepareDataPlugins":           false,
	"enableLegacyMetrics":          false,
	flowControlGate:                false,
	"haPopulateNonLeaderDatastore": true,
}

// parseGate splits "gate", "gate=true" or "gate=false".
func parseGate(s string) (name string, on bool, err error) {
	name, value, hasValue := strings.Cut(strings.TrimSpace(s), "=")
	name = strings.TrimSpace(name)
	if name == "" {
		return "", false, fmt.Errorf("empty feature gate")
	}
	if !hasValue {
		return name, true, nil
	}
	on, err = strconv.ParseBool(strings.TrimSpace(value))
	if err != nil {
		return "", false, fmt.Errorf("feature gate %q: value %q is not true or false", name, value)
	}
	return name, on, nil
}

// Gates returns the value of every known feature gate: its default unless
// the config sets it.
func (c *Config) Gates() map[string]bool {
	out := maps.Clone(knownGates)
	for _, g := range c.FeatureGates {
		if name, on, err := parseGate(g); err == nil {
			out[name] = on
		}
	}
	return out
}

// FeatureEnabled reports whether the named gate is on.
func (c *Config) FeatureEnabled(name string) bool { return c.Gates()[name] }

func validateGates(ps *problems, cfg *Config) {
	seen := map[string]int{}
	for i, g := range cfg.FeatureGates {
		path := idx("featureGates", i)
		name, _, err := parseGate(g)
		if err != nil {
			ps.add(path, "%v", err)
			continue
		}
		if _, ok := knownGates[name]; !ok {
			ps.add(path, "unknown feature gate %q (known: %s)", name, strings.Join(slices.Sorted(maps.Keys(knownGates)), ", "))
			continue
		}
		if j, dup := seen[name]; dup {
			ps.add(path, "feature gate %q is already set by featureGates[%d]", name, j)
			continue
		}
		seen[name] = i
	}
}
