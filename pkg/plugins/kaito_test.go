package plugins

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/openepp/openepp/pkg/disagg"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

const kaitoRole = "kaito.sh/inference-role"

// kaitoEndpoints returns one endpoint per role, labelled as KAITO labels
// its pods (name = role-index), with metrics from plugintest.
func kaitoEndpoints(roles ...string) []*endpoint.Endpoint {
	base := plugintest.Endpoints(len(roles), 2)
	out := make([]*endpoint.Endpoint, len(roles))
	for i, r := range roles {
		e := endpoint.New(endpoint.Spec{Name: fmt.Sprintf("%s-%d", r, i), Address: fmt.Sprintf("10.2.0.%d", i+1), Port: 8000,
			Labels: map[string]string{kaitoRole: r}})
		e.SetMetrics(base[i].Metrics())
		e.SetStale(false)
		out[i] = e
	}
	return out
}

func readConfig(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestKAITOConfig loads KAITO's P/D config as shipped (config/kaito-pd.yaml:
// disagg-headers-handler, by-label-selector role filters, a prefix-based
// decider) and routes on endpoints labelled kaito.sh/inference-role: a
// prompt with uncached tokens gets a decode destination and a prefill
// endpoint named once in x-prefiller-host-port; a tiny one stays on decode
// with a client-sent header stripped; the deprecated header handler
// changes nothing the profile handler decided, wherever it is listed.
func TestKAITOConfig(t *testing.T) {
	t.Parallel()
	yaml := readConfig(t, "../../config/kaito-pd.yaml")
	eps := kaitoEndpoints("prefill", "decode", "prefill", "decode")
	without := strings.Replace(yaml, "- type: disagg-headers-handler\n", "", 1)
	variants := []struct{ name, cfg string }{
		{"without header handler", without}, // the reference
		{"as shipped", yaml},
		{"header handler after the profile handler", strings.Replace(without, "- type: max-score-picker\n",
			"- type: max-score-picker\n- type: disagg-headers-handler\n", 1)},
		{"old alias", strings.Replace(yaml, "type: disagg-headers-handler", "type: prefill-header-handler", 1)},
	}
	var want string
	for _, v := range variants {
		s, err := buildPD(t, v.cfg, nil, eps)
		if err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		res := route(t, s, plugintest.Request("m", 4000), eps)
		if dest := res.Targets()[0]; dest.Labels[kaitoRole] != "decode" {
			t.Errorf("%s: destination %s, want a decode endpoint", v.name, dest.Name)
		}
		prefiller := res.Headers[disagg.PrefillerHeader]
		if p := byHostPort(eps, prefiller); p == nil || p.Labels[kaitoRole] != "prefill" {
			t.Errorf("%s: %s = %q, want a prefill endpoint (headers %v)", v.name, disagg.PrefillerHeader, prefiller, res.Headers)
		}
		if contains(res.RemovedHeaders, disagg.PrefillerHeader) {
			t.Errorf("%s: prefill decided, yet %s also to be removed: %v", v.name, disagg.PrefillerHeader, res.RemovedHeaders)
		}
		if want == "" {
			want = prefiller
		} else if prefiller != want {
			t.Errorf("%s: prefiller %q, without the header handler %q", v.name, prefiller, want)
		}
		tiny := &scheduler.Request{ID: "tiny", Model: "m", IncomingModel: "m",
			Headers: map[string]string{disagg.PrefillerHeader: "203.0.113.9:8000"}, // sent by the client
			Body:    &request.Body{API: request.Completions, Model: "m", Prompt: []byte("hi")}}
		res = route(t, s, tiny, eps)
		if _, ok := res.Headers[disagg.PrefillerHeader]; ok || !contains(res.RemovedHeaders, disagg.PrefillerHeader) ||
			res.Targets()[0].Labels[kaitoRole] != "decode" {
			t.Errorf("%s: tiny prompt: destination %s, headers %v, removed %v; want decode-only, client header stripped",
				v.name, res.Targets()[0].Name, res.Headers, res.RemovedHeaders)
		}
	}
}

// TestKAITOConfigErrors: the deprecated types keep OpenEPP's strictness.
func TestKAITOConfigErrors(t *testing.T) {
	t.Parallel()
	yaml := readConfig(t, "../../config/kaito-pd.yaml")
	tests := []struct{ name, from, to, want string }{
		{name: "explicit prefill profile missing", from: "- type: disagg-headers-handler\n",
			to: "- type: disagg-headers-handler\n  parameters: {prefillProfile: prefill-stage}\n", want: `needs a profile named "prefill-stage"`},
		{name: "unknown header handler parameter", from: "- type: disagg-headers-handler\n",
			to: "- type: disagg-headers-handler\n  parameters: {prefillHeader: x}\n", want: `unknown field "prefillHeader"`},
		{name: "empty selector", from: "{matchLabels: {kaito.sh/inference-role: decode}}", to: "{}", want: "at least one requirement"},
		{name: "misspelt selector field", from: "{matchLabels: {kaito.sh/inference-role: decode}}",
			to: "{matchLabel: {kaito.sh/inference-role: decode}}", want: `unknown field "matchLabel"`},
	}
	for _, tc := range tests {
		cfg := strings.Replace(yaml, tc.from, tc.to, 1)
		if cfg == yaml {
			t.Fatalf("%s: %q not found in the config", tc.name, tc.from)
		}
		_, err := buildPD(t, cfg, nil, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func byHostPort(eps []*endpoint.Endpoint, hostPort string) *endpoint.Endpoint {
	for _, e := range eps {
		if e.HostPort == hostPort {
			return e
		}
	}
	return nil
}
