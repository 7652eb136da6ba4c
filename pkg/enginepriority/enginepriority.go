// Package enginepriority carries a request's priority to the model server's
// own scheduler. The EPP's priority (an InferenceObjective's: higher is more
// important) orders requests only until they are dispatched; an engine that
// schedules by priority (vLLM's --scheduling-policy priority, SGLang's
// --enable-priority-scheduling) keeps that order in its waiting queue and
// preempts the least important running request first when its KV cache
// runs out. Engines disagree on the direction: vLLM runs lower values
// first, SGLang higher ones, so the value written depends on the engine
// behind the chosen endpoint (as llm-d's router does since its PR #2265).
package enginepriority

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/openepp/openepp/pkg/endpoint"
)

// Order is how an engine reads the "priority" request member.
type Order int

const (
	// None: the engine takes no priority; nothing is written.
	None Order = iota
	// LowerFirst: lower values run first (vLLM); the EPP's priority is
	// negated.
	LowerFirst
	// HigherFirst: higher values run first (SGLang's default); the EPP's
	// priority is written as is.
	HigherFirst
)

var orderNames = map[string]Order{"none": None, "lower-first": LowerFirst, "higher-first": HigherFirst}

func (o Order) String() string {
	for name, v := range orderNames {
		if v == o {
			return name
		}
	}
	return fmt.Sprintf("order(%d)", int(o))
}

// DefaultOrders are the built-in engines' conventions; engines not listed
// (TensorRT-LLM, Triton, custom mappings) take none.
func DefaultOrders() map[string]Order {
	return map[string]Order{"vllm": LowerFirst, "sglang": HigherFirst}
}

// ParseOrders reads "engine=order,engine=order" (orders: lower-first,
// higher-first, none) over the defaults, e.g. "sglang=lower-first" for
// SGLang servers run with --schedule-low-priority-values-first.
func ParseOrders(s string) (map[string]Order, error) {
	orders := DefaultOrders()
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		engine, name, ok := strings.Cut(item, "=")
		engine, name = strings.TrimSpace(engine), strings.TrimSpace(name)
		order, known := orderNames[name]
		switch {
		case !ok || engine == "":
			return nil, fmt.Errorf("%q: want engine=order", item)
		case !known:
			return nil, fmt.Errorf("%q: unknown order %q (known: %s)", item, name,
				strings.Join(slices.Sorted(maps.Keys(orderNames)), ", "))
		}
		orders[engine] = order
	}
	return orders, nil
}

// Writer gives the "priority" member to write for a request sent to an
// endpoint. It is safe for concurrent use once built.
type Writer struct {
	engineOf func(labels map[string]string) string
	orders   map[string]Order
}

// New returns a Writer; engineOf names an endpoint's engine from its labels
// (as the metrics scraper chooses its metric names).
func New(engineOf func(labels map[string]string) string, orders map[string]Order) *Writer {
	return &Writer{engineOf: engineOf, orders: maps.Clone(orders)}
}

// Value returns the body value carrying priority to target's engine; ok is
// false when that engine takes none.
func (w *Writer) Value(target *endpoint.Endpoint, priority int) (value int, ok bool) {
	switch w.orders[w.engineOf(target.Labels)] {
	case LowerFirst:
		return -priority, true
	case HigherFirst:
		return priority, true
	}
	return 0, false
}

// Describe renders the orders for a log line: "sglang=higher-first vllm=lower-first".
func (w *Writer) Describe() string {
	var parts []string
	for _, engine := range slices.Sorted(maps.Keys(w.orders)) {
		if o := w.orders[engine]; o != None {
			parts = append(parts, engine+"="+o.String())
		}
	}
	return strings.Join(parts, " ")
}
