package epp

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/sim"
)

// modelsConfig lists models-responder with a source polling every 100ms.
const modelsConfig = `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: models-responder
- type: models-data-source
  parameters: {interval: 100ms}
schedulingProfiles:
- name: default
  plugins: [{pluginRef: queue-scorer}]
`

// loraSims are two servers of base model "base", each with its own
// adapter; refuse starts them refusing connections.
func loraSims(refuse bool) []sim.Config {
	cfgs := []sim.Config{{Model: "base", LoRAs: []string{"lora-a"}}, {Model: "base", LoRAs: []string{"lora-b"}}}
	for i := range cfgs {
		cfgs[i].Capacity.MaxLoRAs = 2
		cfgs[i].Faults.RefuseConnections = refuse
	}
	return cfgs
}

// listModels asks the EPP for GET /v1/models through the ext_proc client:
// its own answer, or nil when it routed the request to a model server (no
// list collected yet).
func (r *running) listModels(t *testing.T) *extproc.ImmediateResponse {
	t.Helper()
	d, err := r.client.RoundTrip(context.Background(), extproc.Request{Method: http.MethodGet, Path: "/v1/models"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Immediate == nil && len(d.Endpoints) == 0 {
		t.Fatalf("GET /v1/models neither answered nor routed: %+v", d)
	}
	return d.Immediate
}

// getAnswered sends GET path and returns the EPP's own answer, failing the
// test if the request was routed to a server instead.
func (r *running) getAnswered(t *testing.T, path string) *extproc.ImmediateResponse {
	t.Helper()
	d, err := r.client.RoundTrip(context.Background(), extproc.Request{Method: http.MethodGet, Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if d.Immediate == nil {
		t.Fatalf("GET %s was routed to %v, not answered by the EPP", path, d.Endpoints)
	}
	return d.Immediate
}

// TestModelsResponderServesThePool: GET /v1/models through the gateway
// lists the base model once and the adapters of both servers, answered by
// the EPP itself; a request for an adapter goes to its server only.
func TestModelsResponderServesThePool(t *testing.T) {
	t.Parallel()
	r := launchEPPSims(t, loraSims(false), 0, nil, func(r *running) []string {
		return []string{"--endpoints-file", r.file, "--config-text", modelsConfig}
	})
	var imm *extproc.ImmediateResponse
	eventually(t, "a collected model list", func() bool {
		imm = r.listModels(t)
		return imm != nil && imm.Status == http.StatusOK && strings.Contains(string(imm.Body), "lora-b") && strings.Contains(string(imm.Body), "lora-a")
	})
	if ct := imm.Headers.Get("content-type"); ct != "application/json" {
		t.Errorf("content-type %q", ct)
	}
	// One model: the EPP answers from the lists, whichever server has it.
	for path, want := range map[string]int{"/v1/models/lora-a": http.StatusOK, "/v1/models/lora-b": http.StatusOK, "/v1/models/nope": http.StatusNotFound} {
		if one := r.getAnswered(t, path); one.Status != want {
			t.Errorf("GET %s: %d %s, want %d", path, one.Status, one.Body, want)
		}
	}
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID      string `json:"id"`
			Object  string `json:"object"`
			OwnedBy string `json:"owned_by"`
			Created int64  `json:"created"`
		} `json:"data"`
	}
	if err := json.Unmarshal(imm.Body, &list); err != nil {
		t.Fatalf("body %s: %v", imm.Body, err)
	}
	var ids []string
	for _, m := range list.Data {
		ids = append(ids, m.ID)
		if m.Object != "model" || m.OwnedBy != "vllm" || m.Created == 0 {
			t.Errorf("entry %+v lacks the server's fields", m)
		}
	}
	if list.Object != "list" || !cmp.Equal(ids, []string{"base", "lora-a", "lora-b"}) {
		t.Errorf("list %s: want base, lora-a and lora-b", imm.Body)
	}
	for range 5 {
		for i, model := range []string{"lora-a", "lora-b"} {
			if got := r.route(t, `{"model":"`+model+`","prompt":"hi"}`).Endpoints[0]; got != r.servers[i] {
				t.Fatalf("%s went to %s; only %s has it", model, got, r.servers[i])
			}
		}
	}
	if page := r.metricsPage(t); !strings.Contains(page, `openepp_models_responses_total{code="200"}`) {
		t.Error("answers are not counted in openepp_models_responses_total")
	}
}

// TestModelsResponderRoutesUntilTheFirstList: while no server's list can be
// read a model server answers (the EPP routes the request), then the EPP
// answers with the list once a server's is collected.
func TestModelsResponderRoutesUntilTheFirstList(t *testing.T) {
	t.Parallel()
	r := launchEPPSims(t, loraSims(true), 0, nil, func(r *running) []string {
		return []string{"--endpoints-file", r.file, "--config-text", modelsConfig}
	})
	if imm := r.listModels(t); imm != nil {
		t.Fatalf("before any list the EPP answered %d %s; want the request routed", imm.Status, imm.Body)
	}
	counted := func(page, prefix string) bool {
		for _, line := range strings.Split(page, "\n") {
			if v, ok := strings.CutPrefix(line, prefix); ok && v != "0" {
				return true
			}
		}
		return false
	}
	eventually(t, "a refused poll counted, under llm-d's name too", func() bool {
		page := r.metricsPage(t)
		return counted(page, `openepp_models_poll_errors_total{reason="connection_refused"} `) &&
			counted(page, `llm_d_epp_datalayer_poll_errors_total{source_type="models-data-source"} `)
	})
	if err := r.sims[1].SetFaults(sim.Faults{}); err != nil {
		t.Fatal(err)
	}
	var imm *extproc.ImmediateResponse
	eventually(t, "the second server's list", func() bool {
		imm = r.listModels(t)
		return imm != nil && imm.Status == http.StatusOK
	})
	if body := string(imm.Body); !strings.Contains(body, `"lora-b"`) || strings.Contains(body, `"lora-a"`) {
		t.Errorf("list %s: want the second server's models only", body)
	}
}
