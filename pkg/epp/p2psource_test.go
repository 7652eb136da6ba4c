package epp

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/p2psource"
)

// loadLedP2P places requests by queue alone (ties at random) and names,
// in x-kv-cache-source-host-port, the server holding a longer prefix than
// the one chosen; the prefix producer it reads is created by the loader.
const loadLedP2P = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: p2p-source-producer
  parameters:
    minCachedTokenDelta: 64
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
`

// TestP2PSourceNamesTheHolder: with placement blind to the cache, a
// request landing away from the servers that hold its prompt's prefix is
// told to pull from one of them, one landing on a holder is not, and a
// source a client names itself never reaches the model server.
func TestP2PSourceNamesTheHolder(t *testing.T) {
	t.Parallel()
	r := launchEPP(t, 4, 0, nil, func(r *running) []string {
		return []string{"--endpoints-file", r.file, "--config-text", loadLedP2P}
	})
	model := r.sims[0].Model()
	document := strings.Repeat("The quarterly report covers revenue, costs and the outlook for every region. ", 40)
	body := func(q string) string {
		return fmt.Sprintf(`{"model":%q,"max_tokens":2,"messages":[{"role":"user","content":%q}]}`, model, document+q)
	}
	route := func(q string, headers map[string][]string) *extproc.Decision {
		t.Helper()
		h := map[string][]string{"content-type": {"application/json"}}
		for k, v := range headers {
			h[k] = v
		}
		d, err := r.client.RoundTrip(context.Background(), extproc.Request{Method: "POST", Path: "/v1/chat/completions", Headers: h, Body: []byte(body(q))})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	var holder string
	eventually(t, "the EPP to see its servers", func() bool {
		d := route("First question?", nil)
		if len(d.Endpoints) > 0 {
			holder = d.Endpoints[0]
		}
		return holder != ""
	})
	// Each request records the document at its server, so a request
	// landing on a server that has not had it yet is told to pull from one
	// that has; one landing on a holder is not (the others hold no more of
	// it than the 64-token minCachedTokenDelta).
	holders := map[string]bool{holder: true}
	pulls := 0
	for i := range 24 {
		d := route(fmt.Sprintf("Question %d?", i), map[string][]string{p2psource.Header: {"10.9.9.9:1"}})
		if len(d.Endpoints) == 0 {
			t.Fatalf("request %d not routed: %+v", i, d.Immediate)
		}
		target, got := d.Endpoints[0], d.Headers.Get(p2psource.Header)
		switch {
		case holders[target] && got != "":
			t.Errorf("request %d went to %s, which holds the document, and was told to pull from %q", i, target, got)
		case !holders[target] && !holders[got]:
			t.Errorf("request %d went to %s, which lacks the document; source header %q, want one of %v", i, target, got, holders)
		case !holders[target]:
			pulls++
		}
		holders[target] = true
	}
	if pulls == 0 || len(holders) < 2 {
		t.Fatalf("%d pulls named, holders %v: queue-led placement should have spread the requests", pulls, holders)
	}
	// A request whose prompt no server holds gets no source, and the
	// client's own value is stripped.
	cold, err := r.client.RoundTrip(context.Background(), extproc.Request{Method: "POST", Path: "/v1/chat/completions",
		Headers: http.Header{"content-type": {"application/json"}, p2psource.Header: {"10.9.9.9:1"}},
		Body:    []byte(fmt.Sprintf(`{"model":%q,"max_tokens":2,"messages":[{"role":"user","content":"a prompt nobody has seen"}]}`, model))})
	if err != nil || len(cold.Endpoints) == 0 {
		t.Fatalf("cold request: %v %+v", err, cold.Immediate)
	}
	if v := cold.Headers.Get(p2psource.Header); v != "" {
		t.Errorf("a cold request carried source %q upstream", v)
	}
}

// TestP2PSourceMustChooseAmongProducers: with two prefix producers and
// none named, the EPP refuses the config and says what to do.
func TestP2PSourceMustChooseAmongProducers(t *testing.T) {
	t.Parallel()
	cfg := `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: approx-prefix-cache-producer
- {name: second, type: approx-prefix-cache-producer}
- type: p2p-source-producer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
`
	err := Run(context.Background(), []string{"--config-text", cfg, "--endpoints", "127.0.0.1:1", "--bind-address", "127.0.0.1",
		"--grpc-port", "0", "--grpc-health-port", "0", "--metrics-port", "0", "--tracing=false"}, WithLogger(logr.Discard()))
	if err == nil || !strings.Contains(err.Error(), "prefixMatchInfoProducerName: not set") {
		t.Fatalf("Run error = %v, want it to ask for prefixMatchInfoProducerName", err)
	}
}
