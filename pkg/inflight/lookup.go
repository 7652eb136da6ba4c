package inflight

import (
	"fmt"

	"github.com/openepp/openepp/pkg/scheduler"
)

// Lookup finds the in-flight books of the plugin called name in h's
// configuration (an inFlightLoadProducerName parameter); producerType
// names the plugin type to advise listing when there is none.
func Lookup(h *scheduler.Handle, name, producerType string) (*Tracker, error) {
	p, ok := h.Plugin(name)
	if !ok {
		return nil, fmt.Errorf("inFlightLoadProducerName: no plugin named %q in the config (list `- type: %s`)", name, producerType)
	}
	books, ok := p.(interface{ Tracker() *Tracker })
	if !ok || books.Tracker() == nil {
		return nil, fmt.Errorf("inFlightLoadProducerName: plugin %q (type %q) keeps no in-flight books", name, p.TypedName().Type)
	}
	return books.Tracker(), nil
}
