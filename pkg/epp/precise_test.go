package epp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/sim"
)

// TestPreciseRoutingFollowsKVEvents runs llm-d's precise pipeline end to
// end: two simulated vLLMs publish their KV events over ZeroMQ to the
// EPP, which tokenizes each request on the pool's /tokenize and routes a
// request to the server whose cache holds its prompt's prefix, a server
// that got that prefix without the EPP routing it there.
func TestPreciseRoutingFollowsKVEvents(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	events := "tcp://" + ln.Addr().String()
	ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sims := make([]sim.Config, 2)
	pubs := make([]*sim.KVEventPublisher, len(sims))
	for i := range sims {
		if pubs[i], err = sim.NewKVEventPublisher(ctx, events, false); err != nil {
			t.Fatal(err)
		}
		sims[i].KVEvents = pubs[i]
	}
	cfg := filepath.Join(t.TempDir(), "precise.yaml")
	text, err := os.ReadFile("../../config/precise-prefix-cache.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, bytes.ReplaceAll(text, []byte("tcp://*:5557"), []byte(events)), 0o600); err != nil {
		t.Fatal(err)
	}
	r := launchEPPSims(t, sims, 0, nil, func(r *running) []string {
		return []string{"--endpoints-file", r.file, "--config-file", cfg}
	})
	for i, inst := range r.sims {
		pubs[i].SetTopic(sim.KVEventTopic(inst.HostPort(), inst.Model()))
		go pubs[i].Run(ctx, nil)
	}

	var system strings.Builder
	for i := range 300 {
		fmt.Fprintf(&system, "rule %d. ", i)
	}
	chatBody := func(question string) []byte {
		b, _ := json.Marshal(map[string]any{"model": r.sims[1].Model(), "max_tokens": 2, "messages": []map[string]string{
			{"role": "system", "content": system.String()}, {"role": "user", "content": question},
		}})
		return b
	}
	post := func(body []byte) {
		resp, err := http.Post(r.sims[1].URL()+"/v1/chat/completions", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	stored := func() float64 {
		return metricValue(r.metricsPage(t), `openepp_precise_prefix_events_total{outcome="stored",plugin="precise-prefix-cache-producer"}`)
	}
	// A publisher's first events are lost until its connection is up (as
	// vLLM's are): warm up with other prompts until events arrive.
	warm := 0
	eventually(t, "the second server's events", func() bool {
		warm++
		b, _ := json.Marshal(map[string]any{"model": r.sims[1].Model(), "max_tokens": 1, "prompt": strings.Repeat(fmt.Sprintf("warm %d ", warm), 40)})
		resp, err := http.Post(r.sims[1].URL()+"/v1/completions", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return stored() > 0
	})
	// The second server computes the prefix, the EPP not knowing.
	before := stored()
	post(chatBody("first"))
	eventually(t, "the prefix's blocks", func() bool { return stored() >= before+40 })

	route := func() string {
		d, err := r.client.RoundTrip(context.Background(), extproc.Request{Method: "POST", Path: "/v1/chat/completions",
			Headers: map[string][]string{"content-type": {"application/json"}}, Body: chatBody("another question")})
		if err != nil {
			t.Fatal(err)
		}
		if d.Immediate != nil {
			t.Fatalf("immediate response %d: %s", d.Immediate.Status, d.Immediate.Body)
		}
		return d.Endpoints[0]
	}
	for range 3 {
		if got := route(); got != r.servers[1] {
			t.Fatalf("routed to %s, want %s, which holds the prompt's prefix", got, r.servers[1])
		}
	}
	page := r.metricsPage(t)
	for _, want := range []string{
		`openepp_precise_prefix_events_total{outcome="stored",plugin="precise-prefix-cache-producer"}`,
		`openepp_precise_prefix_subscriptions{plugin="precise-prefix-cache-producer"} 1`,
		`openepp_token_producer_requests_total{outcome="ok",plugin="token-producer"}`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("metrics page lacks %s", want)
		}
	}
}

// metricValue is the value of the series line of page that starts with
// series (labels as the page writes them), 0 when there is none.
func metricValue(page, series string) float64 {
	for _, line := range strings.Split(page, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v
		}
	}
	return 0
}

// preciseOnly routes by the precise producer's match alone, speculating
// on every decision; the servers publish no events, so what a replica
// knows of another's traffic came through replica sync.
const preciseOnly = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: token-producer
  parameters:
    backend: vllm
    vllm:
      endpointDiscovery: {}
- type: precise-prefix-cache-producer
  parameters:
    speculativeIndexing: true
    speculativeTTL: 1m
    kvEventsConfig:
      zmqEndpoint: tcp://127.0.0.1:0
- type: prefix-cache-scorer
  parameters:
    prefixMatchInfoProducerName: precise-prefix-cache-producer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: prefix-cache-scorer
`

// TestReplicasSharePreciseSpeculation: replica B hears replica A's
// speculative entries and routes A's prompts where A sent them, before
// any server has said it holds them (without the sync B would pick at
// random: all five agreeing by chance is 1 in 8⁵).
func TestReplicasSharePreciseSpeculation(t *testing.T) {
	t.Parallel()
	a, b, _ := launchReplicaPair(t, preciseOnly)
	prompts, _ := bFollowsA(t, a, b)
	if n := metricValue(a.metricsPage(t), `openepp_token_producer_requests_total{outcome="ok",plugin="token-producer"}`); n < float64(2*len(prompts)) {
		t.Errorf("A tokenized %v requests, want %d", n, 2*len(prompts))
	}
}
