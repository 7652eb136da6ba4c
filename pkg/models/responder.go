package models

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// ResponderType is llm-d's type name of the pool-wide model list.
const ResponderType = "models-responder"

// Responder is the models-responder plugin. As a responder it answers GET
// /v1/models (a trailing slash and a query string allowed) from the model
// lists collected from the pool's endpoints (see the package doc); it
// declines every other request. As a screener it narrows inference
// requests' candidates by model (Screen). It has no parameters; listing it
// adds a models-data-source and a models-data-extractor unless the config
// lists a models-data-source in dataLayer.sources.
type Responder struct {
	name scheduler.TypedName
	tel  *responseMetrics
	log  logr.Logger
	// pool is the EPP's view of the pool, for DumpState only (requests
	// bring their candidates).
	pool func() []*endpoint.Endpoint
}

var (
	_ scheduler.Responder   = (*Responder)(nil)
	_ scheduler.Screener    = (*Responder)(nil)
	_ scheduler.StateDumper = (*Responder)(nil)
)

// ResponderFactory builds a Responder from config; it takes no parameters.
func ResponderFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	if err := scheduler.DecodeParams(raw, &struct{}{}); err != nil {
		return nil, err
	}
	tel, err := newResponseMetrics(h.Registerer)
	if err != nil {
		return nil, err
	}
	return &Responder{name: scheduler.TypedName{Type: ResponderType, Name: name}, tel: tel, log: h.Log, pool: h.Endpoints}, nil
}

// ResponderRegistration describes the plugin type for the registry.
func ResponderRegistration() scheduler.Registration {
	return scheduler.Registration{Type: ResponderType, Factory: ResponderFactory,
		Summary: "Answers GET /v1/models itself with the union of every endpoint's collected model list (one entry per id, sorted; while none " +
			"is collected a model server answers) and GET /v1/models/{id} when the lists settle it, and keeps inference requests on endpoints that list their model: those listing it as a base model plus uncollected " +
			"ones; only those listing it as a LoRA adapter; or, when none lists it, the uncollected ones (all if every one is collected). " +
			"Adds a models-data-source and models-data-extractor unless dataLayer.sources lists a models-data-source."}
}

// TypedName implements scheduler.Plugin.
func (r *Responder) TypedName() scheduler.TypedName { return r.name }

// Respond implements scheduler.Responder: the pool's list, and one model of
// it (GET /v1/models/{id}) when the collected lists settle the answer.
func (r *Responder) Respond(_ context.Context, in *scheduler.Inbound, endpoints []*endpoint.Endpoint) (scheduler.Reply, bool) {
	if in.Method != http.MethodGet {
		return scheduler.Reply{}, false
	}
	if id, ok := modelPath(in.Path); ok {
		return r.respondOne(in, id, endpoints)
	}
	if !isModelsPath(in.Path) {
		return scheduler.Reply{}, false
	}
	body, collected := ListBody(endpoints)
	if collected == 0 {
		// A model server answers instead: its own list beats a 503, and it
		// sees the client's credentials, which the polls may lack (vLLM's
		// --api-key). With no endpoint at all, routing answers 503.
		r.log.V(1).Info("no model list collected yet: a model server answers", "requestID", in.Headers["x-request-id"], "endpoints", len(endpoints))
		return scheduler.Reply{}, false
	}
	r.tel.answered(http.StatusOK)
	return scheduler.Reply{Status: http.StatusOK, ContentType: "application/json", Body: body}, true
}

// respondOne answers GET /v1/models/{id}: the model's entry when an
// endpoint lists it, 404 when every endpoint's list is collected and none
// does. Otherwise it declines, and a model server answers: an endpoint not
// yet collected may serve the model.
func (r *Responder) respondOne(in *scheduler.Inbound, id string, endpoints []*endpoint.Endpoint) (scheduler.Reply, bool) {
	picks, collected := union(endpoints)
	if p, ok := picks[id]; ok {
		body, err := json.Marshal(p.item())
		if err == nil {
			r.tel.answered(http.StatusOK)
			return scheduler.Reply{Status: http.StatusOK, ContentType: "application/json", Body: body}, true
		}
	}
	if collected == 0 || collected < len(endpoints) {
		return scheduler.Reply{}, false
	}
	r.tel.answered(http.StatusNotFound)
	body, _ := json.Marshal(map[string]any{"error": map[string]any{
		"message": fmt.Sprintf("The model `%s` does not exist.", id), "type": "NotFoundError", "code": http.StatusNotFound}})
	r.log.V(1).Info("model not served by any endpoint", "requestID", in.Headers["x-request-id"], "model", id)
	return scheduler.Reply{Status: http.StatusNotFound, ContentType: "application/json", Body: body}, true
}

// modelPath returns the model id of a /v1/models/{id} path (the id may
// hold slashes, as in "org/model", or be escaped).
func modelPath(path string) (string, bool) {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	rest, ok := strings.CutPrefix(path, "/v1/models/")
	if !ok || rest == "" {
		return "", false
	}
	id, err := url.PathUnescape(rest)
	if err != nil {
		return rest, true
	}
	return id, true
}

// isModelsPath reports whether path, without its query, is /v1/models or
// /v1/models/.
func isModelsPath(path string) bool {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	return path == "/v1/models" || path == "/v1/models/"
}

// listItem is one entry of the answer: the fields OpenAI defines, as the
// server reported them.
type listItem struct {
	ID           string          `json:"id"`
	Object       string          `json:"object"`
	Created      int64           `json:"created"`
	OwnedBy      string          `json:"owned_by"`
	ShutdownDate json.RawMessage `json:"shutdown_date,omitempty"`
}

type list struct {
	Object string     `json:"object"`
	Data   []listItem `json:"data"`
}

// pick is the entry a union keeps for one id, and the endpoint it is from.
type pick struct {
	m    *endpoint.Model
	from string
}

func (p pick) item() listItem {
	obj := p.m.Object
	if obj == "" {
		obj = "model"
	}
	return listItem{ID: p.m.ID, Object: obj, Created: p.m.Created, OwnedBy: p.m.OwnedBy, ShutdownDate: p.m.ShutdownDate}
}

// union is every collected entry by id, an id listed by several endpoints
// taken from the first of them by name, and how many endpoints had a list.
func union(endpoints []*endpoint.Endpoint) (map[string]pick, int) {
	byID := map[string]pick{}
	collected := 0
	for _, ep := range endpoints {
		ms := ep.Models()
		if ms == nil {
			continue
		}
		collected++
		for i := range ms.Items {
			m := &ms.Items[i]
			if p, seen := byID[m.ID]; !seen || ep.Name < p.from {
				byID[m.ID] = pick{m, ep.Name}
			}
		}
	}
	return byID, collected
}

// ListBody renders the union of the endpoints' collected lists, sorted by
// id, and says how many endpoints had one; an entry without an object is
// a "model".
func ListBody(endpoints []*endpoint.Endpoint) ([]byte, int) {
	byID, collected := union(endpoints)
	out := list{Object: "list", Data: make([]listItem, 0, len(byID))}
	for _, p := range byID {
		out.Data = append(out.Data, p.item())
	}
	slices.SortFunc(out.Data, func(a, b listItem) int { return strings.Compare(a.ID, b.ID) })
	body, err := json.Marshal(out)
	if err != nil { // cannot happen: the raw values were decoded from JSON
		return nil, 0
	}
	return body, collected
}
