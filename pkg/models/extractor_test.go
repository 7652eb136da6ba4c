package models

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
)

// vllmList is a model list as vLLM answers it: the base model under its
// served name (root the path it was loaded from) and a LoRA adapter.
const vllmList = `{"object":"list","data":[
 {"id":"llama","object":"model","created":1700000000,"owned_by":"vllm","root":"/models/llama-3","parent":null,"max_model_len":8192,"permission":[{}]},
 {"id":"sql-lora","object":"model","created":1700000001,"owned_by":"vllm","root":"/adapters/sql","parent":"llama"}]}`

func TestParseList(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		body    string
		want    []endpoint.Model
		wantErr string
	}{{
		name: "vLLM base model and adapter",
		body: vllmList,
		want: []endpoint.Model{
			{ID: "llama", Root: "/models/llama-3", Object: "model", Created: 1700000000, OwnedBy: "vllm"},
			{ID: "sql-lora", Parent: "llama", Root: "/adapters/sql", Object: "model", Created: 1700000001, OwnedBy: "vllm"},
		},
	}, {
		name: "shutdown_date kept verbatim, null dropped",
		body: `{"data":[{"id":"a","shutdown_date":"2026-06-01"},{"id":"b","shutdown_date":1780000000},{"id":"c","shutdown_date":null}]}`,
		want: []endpoint.Model{
			{ID: "a", ShutdownDate: json.RawMessage(`"2026-06-01"`)},
			{ID: "b", ShutdownDate: json.RawMessage(`1780000000`)},
			{ID: "c"},
		},
	}, {
		name: "created that is not an integer",
		body: `{"data":[{"id":"a","created":1.7e9},{"id":"b","created":"yesterday"},{"id":"c","created":null}]}`,
		want: []endpoint.Model{{ID: "a", Created: 1700000000}, {ID: "b"}, {ID: "c"}},
	}, {
		name: "entries without an id are skipped",
		body: `{"object":"list","data":[{"object":"model"},{"id":"x"}]}`,
		want: []endpoint.Model{{ID: "x"}},
	}, {
		name: "empty list",
		body: `{"object":"list","data":[]}`,
		want: []endpoint.Model{},
	}, {
		name:    "no data array",
		body:    `{"object":"list"}`,
		wantErr: `no "data" array`,
	}, {
		name:    "not JSON",
		body:    `<html>not found</html>`,
		wantErr: "model list: invalid character",
	}, {
		name:    "data of the wrong shape",
		body:    `{"data":[{"id":7}]}`,
		wantErr: "cannot unmarshal number",
	}, {
		name:    "truncated",
		body:    vllmList[:60],
		wantErr: "unexpected end of JSON input",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseList([]byte(tc.body))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("models (-want +got):\n%s", diff)
			}
		})
	}
}

func TestModelsIndex(t *testing.T) {
	t.Parallel()
	items, err := ParseList([]byte(`{"data":[{"id":"a","owned_by":"first"},{"id":"l","parent":"a"},{"id":"a","owned_by":"second"},{"id":"s","parent":"s"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	ms := endpoint.NewModels(items, time.Unix(1, 0))
	if len(ms.Items) != 3 {
		t.Fatalf("items %v: the duplicate id was kept", ms.Items)
	}
	a, ok := ms.Find("a")
	if !ok || a.OwnedBy != "first" || a.Adapter() {
		t.Errorf("Find(a) = %+v, %v; want the first entry, a base model", a, ok)
	}
	if l, ok := ms.Find("l"); !ok || !l.Adapter() {
		t.Errorf("Find(l) = %+v, %v; want an adapter", l, ok)
	}
	if s, _ := ms.Find("s"); s.Adapter() {
		t.Error("an entry that is its own parent is not an adapter")
	}
	if _, ok := ms.Find("nope"); ok {
		t.Error("found an unlisted model")
	}
}

func TestExtractorPublishesAndClears(t *testing.T) {
	t.Parallel()
	p, err := ExtractorFactory("x", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	x := p.(*Extractor)
	ep := endpoint.New(endpoint.Spec{Name: "e", Address: "10.0.0.1", Port: 8000})
	at := time.Unix(100, 0)
	if err := x.Extract(ep, []byte(vllmList), at); err != nil {
		t.Fatal(err)
	}
	ms := ep.Models()
	if ms == nil || len(ms.Items) != 2 || !ms.UpdateTime.Equal(at) {
		t.Fatalf("published %+v", ms)
	}
	if err := x.Extract(ep, []byte(`{}`), at); err == nil || ep.Models() != ms {
		t.Errorf("a bad answer: err %v, and the list must stay as it was", err)
	}
	x.Clear(ep)
	if ep.Models() != nil {
		t.Error("Clear left a list")
	}
	if _, err := ExtractorFactory("x", json.RawMessage(`{"any":1}`), nil); err == nil {
		t.Error("an unknown parameter was accepted")
	}
}
