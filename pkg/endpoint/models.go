package endpoint

import (
	"encoding/json"
	"time"
)

// Model is one entry of the OpenAI model list a server answers GET
// /v1/models with.
type Model struct {
	ID string
	// Parent is the model a LoRA adapter extends (vLLM's "parent"); "" for
	// a base model.
	Parent string
	// Root is the server's "root": for vLLM, the path a base model was
	// loaded from (which differs from ID under --served-model-name) or an
	// adapter's path. It says nothing about adapter or base.
	Root    string
	Object  string
	Created int64
	OwnedBy string
	// ShutdownDate is the server's "shutdown_date" as raw JSON; nil when
	// absent or null.
	ShutdownDate json.RawMessage
}

// Adapter reports whether m is a LoRA adapter: its parent names another
// model.
func (m *Model) Adapter() bool { return m.Parent != "" && m.Parent != m.ID }

// Models is the model list one server reported at UpdateTime. It is
// immutable once published: readers share it without locks.
type Models struct {
	// Items are the server's entries in its order, one per ID.
	Items      []Model
	UpdateTime time.Time
	byID       map[string]int
}

// NewModels indexes items by ID; of entries with the same ID, the first
// is kept. items must not be modified afterwards.
func NewModels(items []Model, at time.Time) *Models {
	m := &Models{Items: items[:0:0], UpdateTime: at, byID: make(map[string]int, len(items))}
	for _, it := range items {
		if _, dup := m.byID[it.ID]; dup {
			continue
		}
		m.byID[it.ID] = len(m.Items)
		m.Items = append(m.Items, it)
	}
	return m
}

// Find returns the entry whose ID is id.
func (m *Models) Find(id string) (*Model, bool) {
	i, ok := m.byID[id]
	if !ok {
		return nil, false
	}
	return &m.Items[i], true
}

// Models returns the server's model list, or nil while none has been
// collected (never, or not recently: see the models-data-source). Callers
// must not mutate it.
func (e *Endpoint) Models() *Models { return e.models.Load() }

// SetModels publishes a model list; nil marks the endpoint uncollected.
func (e *Endpoint) SetModels(m *Models) { e.models.Store(m) }
