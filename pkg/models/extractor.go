package models

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// ExtractorType is llm-d's type name of the model-list extractor.
const ExtractorType = "models-data-extractor"

// listExtractor is what a models-data-source feeds: it turns a server's
// answer into endpoint data (Extract) and forgets it (Clear).
type listExtractor interface {
	scheduler.Plugin
	Extract(ep *endpoint.Endpoint, body []byte, now time.Time) error
	Clear(ep *endpoint.Endpoint)
}

// Extractor is the models-data-extractor plugin: it parses an OpenAI model
// list, {"object":"list","data":[{"id":…,"parent":…,"root":…,"object":…,
// "created":…,"owned_by":…}]}, and publishes it as the endpoint's Models.
// An entry whose parent names another model is a LoRA adapter of it (as
// vLLM reports them). Entries without an id are skipped; of entries with
// the same id the first counts. It has no parameters.
type Extractor struct {
	name scheduler.TypedName
}

var _ listExtractor = (*Extractor)(nil)

// ExtractorFactory builds an Extractor from config; it takes no parameters.
func ExtractorFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	if err := scheduler.DecodeParams(raw, &struct{}{}); err != nil {
		return nil, err
	}
	return &Extractor{name: scheduler.TypedName{Type: ExtractorType, Name: name}}, nil
}

// ExtractorRegistration describes the plugin type for the registry.
func ExtractorRegistration() scheduler.Registration {
	return scheduler.Registration{Type: ExtractorType, Factory: ExtractorFactory,
		Summary: "Parses the OpenAI model list a models-data-source fetched (ids; LoRA adapters by their parent) and keeps it on the endpoint for models-responder."}
}

// TypedName implements scheduler.Plugin.
func (x *Extractor) TypedName() scheduler.TypedName { return x.name }

// Extract parses body and publishes the list on ep, stamped now.
func (x *Extractor) Extract(ep *endpoint.Endpoint, body []byte, now time.Time) error {
	items, err := ParseList(body)
	if err != nil {
		return err
	}
	ep.SetModels(endpoint.NewModels(items, now))
	return nil
}

// Clear marks ep uncollected.
func (x *Extractor) Clear(ep *endpoint.Endpoint) { ep.SetModels(nil) }

// wireList is the OpenAI list as servers send it; fields other than these
// (vLLM's max_model_len, permission) are ignored.
type wireList struct {
	Data *[]wireModel `json:"data"`
}

type wireModel struct {
	ID           string          `json:"id"`
	Parent       *string         `json:"parent"`
	Root         *string         `json:"root"`
	Object       string          `json:"object"`
	Created      json.RawMessage `json:"created"`
	OwnedBy      string          `json:"owned_by"`
	ShutdownDate json.RawMessage `json:"shutdown_date"`
}

// ParseList reads an OpenAI model list. It fails on anything that is not a
// JSON object with a "data" array of model objects.
func ParseList(body []byte) ([]endpoint.Model, error) {
	var l wireList
	if err := json.Unmarshal(body, &l); err != nil {
		return nil, fmt.Errorf("model list: %w", err)
	}
	if l.Data == nil {
		return nil, errors.New(`model list: no "data" array`)
	}
	out := make([]endpoint.Model, 0, len(*l.Data))
	for _, w := range *l.Data {
		if w.ID == "" {
			continue
		}
		m := endpoint.Model{ID: w.ID, Object: w.Object, OwnedBy: w.OwnedBy, Created: unixTime(w.Created)}
		if w.Parent != nil {
			m.Parent = *w.Parent
		}
		if w.Root != nil {
			m.Root = *w.Root
		}
		if d := bytes.TrimSpace(w.ShutdownDate); len(d) > 0 && string(d) != "null" {
			m.ShutdownDate = d
		}
		out = append(out, m)
	}
	return out, nil
}

// unixTime reads "created", seconds since the epoch; a value that is not a
// number (absent, null, a string) is 0.
func unixTime(raw json.RawMessage) int64 {
	s := string(bytes.TrimSpace(raw))
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f >= -1<<62 && f <= 1<<62 {
		return int64(f)
	}
	return 0
}
