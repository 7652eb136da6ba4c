package endpoint

import (
	"fmt"
	"maps"
	"strings"
)

// Attributes are numeric facts about an endpoint that data-layer plugins
// publish for filters and scorers to read by name (llm-d's endpoint
// attributes holding a ScalarMetricValue): a GPU's utilization from DCGM, a
// custom metric of the model server. A key names the attribute and the
// plugin type that produces it (AttributeKey), so two producers never
// overwrite each other.
type Attributes map[string]float64

// AttributeKey is the key of attribute name produced by plugin type
// producer, "name/producer" as llm-d spells its data keys; an empty
// producer gives a producer-agnostic key, the name alone.
func AttributeKey(name, producer string) string {
	if producer == "" {
		return name
	}
	return name + "/" + producer
}

// CustomMetricsProducer publishes a model server's own series as
// attributes (core-metrics-extractor's customMetrics): the producer of an
// attribute a plugin names without one.
const CustomMetricsProducer = "core-metrics-extractor"

// ConfiguredAttributeKey is the key a plugin configured with attribute name
// and producer reads, as llm-d's attribute filters and scorers resolve it:
// a nil producer means CustomMetricsProducer, "" the producer-agnostic key
// (the name alone). A name holding "/" needs an explicit producer, since
// it would read as name/producer.
func ConfiguredAttributeKey(name string, producer *string) (string, error) {
	switch {
	case strings.TrimSpace(name) == "":
		return "", fmt.Errorf("required")
	case producer == nil && strings.Contains(name, "/"):
		return "", fmt.Errorf("%q contains \"/\"; give producer explicitly (\"\" reads the key as written)", name)
	case producer == nil:
		return AttributeKey(name, CustomMetricsProducer), nil
	}
	return AttributeKey(name, *producer), nil
}

// Attribute returns the value stored under key (see AttributeKey).
func (e *Endpoint) Attribute(key string) (float64, bool) {
	a := e.attributes.Load()
	if a == nil {
		return 0, false
	}
	v, ok := (*a)[key]
	return v, ok
}

// SetAttributes stores values under their keys and removes the keys in
// drop, in one step readers see whole. Producers call it once per
// collection; a write copies the map, reads never lock.
func (e *Endpoint) SetAttributes(values Attributes, drop ...string) {
	for {
		old := e.attributes.Load()
		var next Attributes
		if old != nil {
			next = maps.Clone(*old)
		}
		if next == nil {
			next = make(Attributes, len(values))
		}
		maps.Copy(next, values)
		for _, k := range drop {
			delete(next, k)
		}
		if e.attributes.CompareAndSwap(old, &next) {
			return
		}
	}
}

// AttributesSnapshot returns a copy of every attribute (debug pages).
func (e *Endpoint) AttributesSnapshot() Attributes {
	if a := e.attributes.Load(); a != nil {
		return maps.Clone(*a)
	}
	return nil
}
