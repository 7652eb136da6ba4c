package pdsidecar_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/pdsidecar"
	"github.com/openepp/openepp/pkg/sim"
	"github.com/openepp/openepp/pkg/sim/tokenize"
	"github.com/openepp/openepp/test/pdsim"
)

// chat is a chat body whose user message has n words.
func chat(n, maxTokens int, stream bool) string {
	extra := ""
	if stream {
		extra = `,"stream":true,"stream_options":{"include_usage":true}`
	}
	return fmt.Sprintf(`{"messages":[{"role":"user","content":%q}],"max_completion_tokens":%d%s}`,
		strings.TrimSpace(strings.Repeat("c ", n)), maxTokens, extra)
}

func chatPrompt(n int) int {
	return tokenize.Count("<|im_start|>user\n" + strings.TrimSpace(strings.Repeat("c ", n)) + "<|im_end|>\n<|im_start|>assistant\n")
}

func TestDisaggregatedAcrossTwoServers(t *testing.T) {
	t.Parallel()
	servers := pdsim.Start(t, 2, pdsim.Options{})
	decoder, prefiller := servers[0], servers[1]
	c := client(t)
	cases := []struct {
		name, path, body string
		prompt           int
		stream           bool
	}{
		{"completions", "/v1/completions", completion(300, 5, false), 300, false},
		{"completions streaming", "/v1/completions", completion(301, 5, true), 301, true},
		{"chat", "/v1/chat/completions", chat(200, 5, false), chatPrompt(200), false},
		{"chat streaming", "/v1/chat/completions", chat(201, 5, true), chatPrompt(201), true},
	}
	for _, tc := range cases {
		r := send(t, c, decoder.URL()+tc.path, prefiller.HostPort(), tc.body)
		if r.status != http.StatusOK || r.header.Get(pdsidecar.PrefilledByHeader) != prefiller.HostPort() ||
			r.header.Get(pdsidecar.FallbackHeader) != "" {
			t.Fatalf("%s: status %d, headers %v: %s", tc.name, r.status, r.header, r.body)
		}
		a, events := parseAnswer(t, r)
		// The decoder pulled the prompt: vLLM reports all but the last
		// token as cached.
		if u := a.Usage; u == nil || u.Prompt != tc.prompt || u.Details.Cached != tc.prompt-1 || u.Completion != 5 {
			t.Fatalf("%s: usage %+v, want %d prompt, %d cached, 5 completion", tc.name, u, tc.prompt, tc.prompt-1)
		}
		if tc.stream && events < 5+2 {
			t.Fatalf("%s: %d SSE events for 5 tokens", tc.name, events)
		}
	}
	if got := prefiller.KVTransferStats(); got.RemoteDecodeRequests != 4 || got.RemotePrefillRequests != 0 {
		t.Errorf("prefiller stats %+v, want 4 prefills served", got)
	}
	if got := decoder.KVTransferStats(); got.RemotePrefillRequests != 4 || got.RemoteDecodeRequests != 0 || got.TransferredTokens == 0 {
		t.Errorf("decoder stats %+v, want 4 pulled prefills", got)
	}
	if g := prefiller.EngineMetrics().GenerationTokens; g != 4 {
		t.Errorf("prefiller generated %d tokens, want 1 per prefill", g)
	}
	fams := scrape(t, c, decoder)
	for _, m := range []struct {
		name, label, value string
		want               float64
	}{
		{"openepp_pd_sidecar_requests_total", "result", "disaggregated", 4},
		{"openepp_pd_sidecar_prefill_calls_total", "outcome", "success", 4},
		{"openepp_pd_sidecar_prefill_duration_seconds", "", "", 4},
		{"openepp_pd_sidecar_fallbacks_total", "reason", pdsidecar.FallbackTimeout, 0},
		{"openepp_sim_kv_remote_prefill_requests_total", "model_name", "sim-model", 4},
	} {
		if got := count(t, fams, m.name, m.label, m.value); got != m.want {
			t.Errorf("decoder %s{%s=%q} = %v, want %v", m.name, m.label, m.value, got, m.want)
		}
	}
	// The prefills reached the prefiller's own sidecar without the header.
	if got := count(t, scrape(t, c, prefiller), "openepp_pd_sidecar_requests_total", "result", "passthrough"); got != 4 {
		t.Errorf("prefiller passthroughs = %v, want 4", got)
	}
}

func TestStreamFlushesPerChunk(t *testing.T) {
	t.Parallel()
	cfg := sim.Config{Latency: pdsim.Fast()}
	cfg.Latency.InterTokenLatency = sim.Ptr(20 * time.Millisecond)
	servers := pdsim.Start(t, 2, pdsim.Options{Config: cfg})
	req, _ := http.NewRequest(http.MethodPost, servers[0].URL()+"/v1/completions", strings.NewReader(completion(50, 40, true)))
	req.Header.Set(pdsidecar.PrefillerHeader, servers[1].HostPort())
	resp, err := client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "data: ") {
		t.Fatalf("first line %q, %v", line, err)
	}
	// 40 tokens take about 800ms; the first chunk arrived while the
	// decoder is still generating.
	if m := servers[0].EngineMetrics(); m.Running != 1 {
		t.Fatalf("first chunk arrived after the decode ended: %+v", m)
	}
}

func TestNoHeaderPassesThrough(t *testing.T) {
	t.Parallel()
	servers := pdsim.Start(t, 1, pdsim.Options{})
	c := client(t)
	req, _ := http.NewRequest(http.MethodPost, servers[0].URL()+"/v1/completions", strings.NewReader(completion(40, 3, false)))
	req.Header.Set("x-request-id", "abc")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("x-request-id") != "abc" ||
		resp.Header.Get(sim.EndpointHeader) != servers[0].HostPort() ||
		resp.Header.Get(pdsidecar.PrefilledByHeader)+resp.Header.Get(pdsidecar.FallbackHeader) != "" {
		t.Fatalf("passthrough answer: %d %v", resp.StatusCode, resp.Header)
	}
	if r := send(t, c, servers[0].URL()+"/v1/completions", "", `{"model":"nope","prompt":"x"}`); r.status != http.StatusNotFound {
		t.Fatalf("the local server's 404 became %d", r.status)
	}
	if st := servers[0].KVTransferStats(); st != (sim.KVTransferStats{}) {
		t.Fatalf("P/D traffic without the header: %+v", st)
	}
	if got := count(t, scrape(t, c, servers[0]), "openepp_pd_sidecar_requests_total", "result", "passthrough"); got != 2 {
		t.Fatalf("passthroughs = %v, want 2", got)
	}
}

func TestBadRequestsAreRejected(t *testing.T) {
	t.Parallel()
	servers := pdsim.Start(t, 2, pdsim.Options{})
	small := pdsim.Start(t, 1, pdsim.Options{Sidecar: pdsidecar.Options{MaxBodyBytes: 100}})[0]
	c := client(t)
	good := servers[1].HostPort()
	tests := []struct {
		name, url string
		headers   []string
		body      string
		status    int
		want      string
	}{
		{"no port", servers[0].URL(), []string{"127.0.0.1"}, completion(3, 1, false), 400, "is not host:port"},
		{"port zero", servers[0].URL(), []string{"127.0.0.1:0"}, completion(3, 1, false), 400, "not in 1..65535"},
		{"port too big", servers[0].URL(), []string{"127.0.0.1:70000"}, completion(3, 1, false), 400, "not in 1..65535"},
		{"url", servers[0].URL(), []string{"http://127.0.0.1:80"}, completion(3, 1, false), 400, "is not host:port"},
		{"bad host", servers[0].URL(), []string{"a_b/c:80"}, completion(3, 1, false), 400, "neither an IP address nor a host name"},
		{"two values", servers[0].URL(), []string{good, good}, completion(3, 1, false), 400, "exactly one host:port"},
		{"comma list", servers[0].URL(), []string{good + "," + good}, completion(3, 1, false), 400, "exactly one host:port"},
		{"not json", servers[0].URL(), []string{good}, "prompt=hello", 400, "JSON object body"},
		{"json list", servers[0].URL(), []string{good}, `[{"prompt":"x"}]`, 400, "JSON object body"},
		{"json null", servers[0].URL(), []string{good}, `null`, 400, "JSON object body"},
		{"too big", small.URL(), []string{good}, completion(100, 1, false), 413, "larger than 100 bytes"},
	}
	for _, tc := range tests {
		req, _ := http.NewRequest(http.MethodPost, tc.url+"/v1/completions", strings.NewReader(tc.body))
		for _, h := range tc.headers {
			req.Header.Add(pdsidecar.PrefillerHeader, h)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := parseAnswer(t, readReply(t, resp))
		if resp.StatusCode != tc.status || a.Error == nil || a.Error.Code != tc.status || !strings.Contains(a.Error.Message, tc.want) {
			t.Errorf("%s: %d %+v, want %d with %q", tc.name, resp.StatusCode, a.Error, tc.status, tc.want)
		}
	}
	untouched(t, append(servers, small)...)
	if got := count(t, scrape(t, c, servers[0]), "openepp_pd_sidecar_requests_total", "result", "rejected"); got != 10 {
		t.Errorf("rejected = %v, want 10", got)
	}
}

func readReply(t *testing.T, resp *http.Response) reply {
	t.Helper()
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: []byte(b.String())}
}

func TestAllowlist(t *testing.T) {
	t.Parallel()
	denied := pdsim.Start(t, 2, pdsim.Options{Sidecar: pdsidecar.Options{AllowedPrefillers: []string{"10.0.0.0/8", "127.0.0.1:1"}}})
	allowed := pdsim.Start(t, 1, pdsim.Options{Sidecar: pdsidecar.Options{AllowedPrefillers: []string{"10.0.0.0/8", "127.0.0.0/8"}}})[0]
	c := client(t)
	r := send(t, c, denied[0].URL()+"/v1/completions", denied[1].HostPort(), completion(20, 2, false))
	if a, _ := parseAnswer(t, r); r.status != http.StatusForbidden || !strings.Contains(a.Error.Message, "is not allowed") {
		t.Fatalf("outside the allowlist: %d %s", r.status, r.body)
	}
	if st := denied[1].KVTransferStats(); st.RemoteDecodeRequests != 0 {
		t.Fatalf("the refused prefiller was called: %+v", st)
	}
	r = send(t, c, allowed.URL()+"/v1/completions", denied[1].HostPort(), completion(20, 2, false))
	if r.status != http.StatusOK || r.header.Get(pdsidecar.PrefilledByHeader) != denied[1].HostPort() {
		t.Fatalf("inside the allowlist: %d %v %s", r.status, r.header, r.body)
	}
}

func TestFailedPrefillFallsBackToLocal(t *testing.T) {
	t.Parallel()
	decoder := pdsim.Start(t, 1, pdsim.Options{Sidecar: pdsidecar.Options{PrefillTimeout: 300 * time.Millisecond}})[0]
	failing := pdsim.Start(t, 1, pdsim.Options{Config: sim.Config{Latency: pdsim.Fast(), Faults: sim.Faults{CompletionsStatus: 503}}})[0]
	hanging, _, ended := hangingPrefiller(t)
	c := client(t)
	tests := []struct {
		name, prefiller, reason string
	}{
		{"closed port", closedPort(t), pdsidecar.FallbackUnreachable},
		{"hanging", hanging, pdsidecar.FallbackTimeout},
		{"503", failing.HostPort(), pdsidecar.FallbackErrorStatus},
		{"no kv_transfer_params", staticPrefiller(t, 200, `{"choices":[{"text":"x"}]}`), pdsidecar.FallbackNoKVTransferParams},
		{"not json", staticPrefiller(t, 200, `<html>`), pdsidecar.FallbackNoKVTransferParams},
		{"null kv_transfer_params", staticPrefiller(t, 200, `{"kv_transfer_params":null}`), pdsidecar.FallbackNoKVTransferParams},
	}
	for _, tc := range tests {
		for _, stream := range []bool{false, true} {
			r := send(t, c, decoder.URL()+"/v1/completions", tc.prefiller, completion(64, 3, stream))
			a, _ := parseAnswer(t, r)
			if r.status != http.StatusOK || r.header.Get(pdsidecar.FallbackHeader) != tc.reason ||
				r.header.Get(pdsidecar.PrefilledByHeader) != "" || a.Usage == nil || a.Usage.Completion != 3 || a.Usage.Details.Cached == 63 {
				t.Fatalf("%s (stream %t): %d %v %s", tc.name, stream, r.status, r.header, r.body)
			}
		}
	}
	receive(t, ended, "the timed-out prefill call was not cancelled")
	if st := decoder.KVTransferStats(); st.RemotePrefillRequests != 0 {
		t.Fatalf("a fallback pulled KV: %+v", st)
	}
	fams := scrape(t, c, decoder)
	for reason, want := range map[string]float64{
		pdsidecar.FallbackUnreachable: 2, pdsidecar.FallbackTimeout: 2,
		pdsidecar.FallbackErrorStatus: 2, pdsidecar.FallbackNoKVTransferParams: 6,
	} {
		if got := count(t, fams, "openepp_pd_sidecar_fallbacks_total", "reason", reason); got != want {
			t.Errorf("fallbacks{%s} = %v, want %v", reason, got, want)
		}
	}
	if got := count(t, fams, "openepp_pd_sidecar_prefill_calls_total", "outcome", "failure"); got != 12 {
		t.Errorf("failed calls = %v, want 12", got)
	}
}

func TestClientCancelCancelsThePrefill(t *testing.T) {
	t.Parallel()
	decoder := pdsim.Start(t, 1, pdsim.Options{})[0]
	hanging, started, ended := hangingPrefiller(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, decoder.URL()+"/v1/completions", strings.NewReader(completion(10, 2, false)))
	req.Header.Set(pdsidecar.PrefillerHeader, hanging)
	errc, cl := make(chan error, 1), client(t)
	go func() {
		resp, err := cl.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	receive(t, started, "prefill never started")
	cancel()
	receive(t, ended, "the prefill call outlived the client")
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("client error %v, want context.Canceled", err)
	}
	c := client(t)
	waitFor(t, "canceled counted", func() bool {
		return count(t, scrape(t, c, decoder), "openepp_pd_sidecar_requests_total", "result", "canceled") == 1
	})
	fams := scrape(t, c, decoder)
	if got := count(t, fams, "openepp_pd_sidecar_prefill_calls_total", "outcome", "canceled"); got != 1 {
		t.Errorf("canceled calls = %v, want 1", got)
	}
	if got := count(t, fams, "openepp_pd_sidecar_requests_total", "result", "fallback"); got != 0 {
		t.Errorf("a cancelled request fell back: %v", got)
	}
	if m := decoder.EngineMetrics(); m.Finished+uint64(m.Waiting+m.Running) != 0 {
		t.Errorf("a cancelled request reached the decoder: %+v", m)
	}
}

// TestLocalURL fronts a server in another "process" (reached over HTTP).
func TestLocalURL(t *testing.T) {
	t.Parallel()
	start := func() *sim.Instance {
		inst, err := sim.Start(context.Background(), sim.Config{Latency: pdsim.Fast()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = inst.Close() })
		return inst
	}
	decoder, prefiller := start(), start()
	local, err := pdsidecar.LocalURL(decoder.URL())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	h, err := pdsidecar.New(pdsidecar.Options{Local: local, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.CloseIdleConnections)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c := client(t)
	for _, stream := range []bool{false, true} {
		r := send(t, c, srv.URL+"/v1/chat/completions", prefiller.HostPort(), chat(100, 4, stream))
		a, _ := parseAnswer(t, r)
		if r.status != http.StatusOK || r.header.Get(pdsidecar.PrefilledByHeader) != prefiller.HostPort() ||
			a.Usage.Details.Cached != chatPrompt(100)-1 {
			t.Fatalf("stream %t: %d %v %s", stream, r.status, r.header, r.body)
		}
	}
	if got := count(t, gather(t, reg), "openepp_pd_sidecar_requests_total", "result", "disaggregated"); got != 2 {
		t.Fatalf("disaggregated = %v, want 2", got)
	}
	if _, err := pdsidecar.LocalURL("127.0.0.1:8000"); err == nil {
		t.Fatal("LocalURL accepted a base without scheme")
	}
	_ = decoder.SetFaults(sim.Faults{RefuseConnections: true})
	if r := send(t, c, srv.URL+"/v1/completions", "", completion(3, 1, false)); r.status != http.StatusBadGateway {
		t.Fatalf("unreachable local server: %d %s", r.status, r.body)
	}
}
