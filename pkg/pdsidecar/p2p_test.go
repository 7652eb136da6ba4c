package pdsidecar_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/openepp/openepp/pkg/pdsidecar"
	"github.com/openepp/openepp/pkg/sim"
	"github.com/openepp/openepp/test/pdsim"
)

// prefixed is a completions body whose prompt is n copies of word, then
// tail extra tokens.
func prefixed(word string, n, tail int) string {
	p := strings.TrimSpace(strings.Repeat(word+" ", n) + strings.Repeat("tail ", tail))
	return fmt.Sprintf(`{"prompt":%q,"max_tokens":2}`, p)
}

// warm sends body to inst's path, so inst's prefix cache holds its prompt.
func warm(t *testing.T, c *http.Client, inst *sim.Instance, path, body string) {
	t.Helper()
	if r := send(t, c, inst.URL()+path, "", body); r.status != http.StatusOK {
		t.Fatalf("warming %s: %d %s", inst.HostPort(), r.status, r.body)
	}
}

// cached is the cached-token count of a successful answer.
func cached(t *testing.T, r reply) int {
	t.Helper()
	a, _ := parseAnswer(t, r)
	if r.status != http.StatusOK || a.Usage == nil {
		t.Fatalf("answer %d %v: %s", r.status, r.header, r.body)
	}
	return a.Usage.Details.Cached
}

// TestP2PPullThroughSidecar: a request naming a KV cache source pulls the
// prefix the source holds, streamed or not; without the header, or naming
// the server itself, nothing is pulled.
func TestP2PPullThroughSidecar(t *testing.T) {
	t.Parallel()
	servers := pdsim.Start(t, 2, pdsim.Options{})
	source, local := servers[0], servers[1]
	c := client(t)
	warm(t, c, source, "/v1/completions", prefixed("a", 300, 0))
	warm(t, c, source, "/v1/chat/completions", chat(300, 1, false))
	if got := cached(t, sendWith(t, c, local.URL()+"/v1/completions", prefixed("a", 300, 7), pdsidecar.KVSourceHeader, source.HostPort())); got != 288 {
		t.Fatalf("completions: %d cached, want the source's 288", got)
	}
	want := chatPrompt(300) / 16 * 16
	if got := cached(t, sendWith(t, c, local.URL()+"/v1/chat/completions", chat(300, 3, true), pdsidecar.KVSourceHeader, source.HostPort())); got != want {
		t.Fatalf("chat stream: %d cached, want the source's %d", got, want)
	}
	if st := local.KVTransferStats(); st.P2PRequests != 2 || st.P2PPulls != 2 || st.P2PPullTokens != uint64(288+want) {
		t.Fatalf("local stats %+v", st)
	}
	if m := source.EngineMetrics(); m.Finished != 2 {
		t.Fatalf("the source served %d requests, want only the 2 warming ones", m.Finished)
	}
	// Without the header nothing is pulled, even of a prompt the source holds.
	warm(t, c, source, "/v1/completions", prefixed("b", 100, 0))
	if got := cached(t, send(t, c, local.URL()+"/v1/completions", "", prefixed("b", 100, 0))); got != 0 {
		t.Fatalf("without the header: %d cached", got)
	}
	// A server is never told to pull from itself, and the sidecar owns the
	// p2p block when the header is there: the client's is dropped.
	selfish := `{"prompt":"x y z","max_tokens":1,"kv_transfer_params":{"p2p":{"remote_host":"127.0.0.1","remote_port":1}}}`
	if got := cached(t, sendWith(t, c, local.URL()+"/v1/completions", selfish, pdsidecar.KVSourceHeader, local.HostPort())); got != 0 {
		t.Fatalf("source is self: %d cached", got)
	}
	if st := local.KVTransferStats(); st.P2PRequests != 2 || st.P2PLookupFailures != 0 {
		t.Fatalf("a request naming this server as its source carried a p2p block: %+v", st)
	}
	fams := scrape(t, c, local)
	if got := count(t, fams, "openepp_pd_sidecar_p2p_pulls_total", "leg", "local"); got != 2 {
		t.Errorf("local pulls = %v, want 2", got)
	}
	if got := count(t, fams, "openepp_pd_sidecar_requests_total", "result", "passthrough"); got != 4 {
		t.Errorf("passthroughs = %v, want 4", got)
	}
}

// TestP2PDeadSource: a source that does not answer costs the pull, not
// the request.
func TestP2PDeadSource(t *testing.T) {
	t.Parallel()
	local := pdsim.Start(t, 1, pdsim.Options{})[0]
	c := client(t)
	if got := cached(t, sendWith(t, c, local.URL()+"/v1/completions", prefixed("d", 64, 0), pdsidecar.KVSourceHeader, closedPort(t))); got != 0 {
		t.Fatalf("%d cached from a dead source", got)
	}
	if st := local.KVTransferStats(); st.P2PRequests != 1 || st.P2PLookupFailures != 1 || st.P2PPulls != 0 {
		t.Fatalf("stats %+v", st)
	}
	fams := scrape(t, c, local)
	if got := count(t, fams, "openepp_sim_kv_p2p_lookup_failures_total", "model_name", "sim-model"); got != 1 {
		t.Errorf("lookup failures = %v, want 1", got)
	}
}

func TestP2PBadSourceHeader(t *testing.T) {
	t.Parallel()
	servers := pdsim.Start(t, 2, pdsim.Options{})
	guarded := pdsim.Start(t, 1, pdsim.Options{Sidecar: pdsidecar.Options{AllowedPrefillers: []string{"10.0.0.0/8"}}})[0]
	c := client(t)
	good := servers[1].HostPort()
	for _, tc := range []struct {
		name, url, body string
		header          []string
		status          int
		want            string
	}{
		{"no port", servers[0].URL(), prefixed("x", 3, 0), []string{"127.0.0.1"}, 400, "x-kv-cache-source-host-port: \"127.0.0.1\" is not host:port"},
		{"two values", servers[0].URL(), prefixed("x", 3, 0), []string{good, good}, 400, "exactly one host:port"},
		{"comma list", servers[0].URL(), prefixed("x", 3, 0), []string{good + "," + good}, 400, "exactly one host:port"},
		{"url", servers[0].URL(), prefixed("x", 3, 0), []string{"http://" + good}, 400, "is not host:port"},
		{"port zero", servers[0].URL(), prefixed("x", 3, 0), []string{"127.0.0.1:0"}, 400, "not in 1..65535"},
		{"not json", servers[0].URL(), "prompt=x", []string{good}, 400, "JSON object body"},
		{"kv params not an object", servers[0].URL(), `{"prompt":"x","kv_transfer_params":[1]}`, []string{good}, 400, "kv_transfer_params must be an object"},
		{"outside the allowlist", guarded.URL(), prefixed("x", 3, 0), []string{good}, 403, fmt.Sprintf("KV cache source %q is not allowed", good)},
	} {
		var header []string
		for _, v := range tc.header {
			header = append(header, pdsidecar.KVSourceHeader, v)
		}
		r := sendWith(t, c, tc.url+"/v1/completions", tc.body, header...)
		if a, _ := parseAnswer(t, r); r.status != tc.status || a.Error == nil || !strings.Contains(a.Error.Message, tc.want) {
			t.Errorf("%s: %d %s, want %d with %q", tc.name, r.status, r.body, tc.status, tc.want)
		}
	}
	untouched(t, append(servers, guarded)...)
	if got := count(t, scrape(t, c, servers[0]), "openepp_pd_sidecar_requests_total", "result", "rejected"); got != 7 {
		t.Errorf("rejected = %v, want 7", got)
	}
}

// TestP2PWithPrefiller: with a prefiller named, the prefiller pulls (the
// block rides the prefill leg), unless it is the source; when the prefill
// fails, the local server pulls for its own prefill.
func TestP2PWithPrefiller(t *testing.T) {
	t.Parallel()
	servers := pdsim.Start(t, 3, pdsim.Options{})
	decoder, prefiller, source := servers[0], servers[1], servers[2]
	c := client(t)
	url := decoder.URL() + "/v1/completions"
	warm(t, c, source, "/v1/completions", prefixed("p", 300, 0))
	r := sendWith(t, c, url, prefixed("p", 300, 5), pdsidecar.PrefillerHeader, prefiller.HostPort(), pdsidecar.KVSourceHeader, source.HostPort())
	if cached(t, r) != 304 || r.header.Get(pdsidecar.PrefilledByHeader) != prefiller.HostPort() {
		t.Fatalf("disaggregated: %v %s", r.header, r.body)
	}
	if st := prefiller.KVTransferStats(); st.P2PRequests != 1 || st.P2PPulls != 1 || st.P2PPullTokens != 288 || st.RemoteDecodeRequests != 1 {
		t.Fatalf("prefiller stats %+v, want one prefill pulling the source's 288 tokens", st)
	}
	if st := decoder.KVTransferStats(); st.P2PRequests != 0 || st.RemotePrefillRequests != 1 {
		t.Fatalf("decoder stats %+v: the decode leg carries no p2p block", st)
	}
	// The prefiller is the source: it has nothing to pull from itself.
	warm(t, c, prefiller, "/v1/completions", prefixed("q", 100, 0))
	r = sendWith(t, c, url, prefixed("q", 100, 5), pdsidecar.PrefillerHeader, prefiller.HostPort(), pdsidecar.KVSourceHeader, prefiller.HostPort())
	if cached(t, r) != 104 || prefiller.KVTransferStats().P2PRequests != 1 {
		t.Fatalf("prefiller as source: %+v %s", prefiller.KVTransferStats(), r.body)
	}
	// A failed prefill falls back to a local prefill that pulls.
	warm(t, c, source, "/v1/completions", prefixed("f", 100, 0))
	r = sendWith(t, c, url, prefixed("f", 100, 5), pdsidecar.PrefillerHeader, closedPort(t), pdsidecar.KVSourceHeader, source.HostPort())
	if cached(t, r) != 96 || r.header.Get(pdsidecar.FallbackHeader) != pdsidecar.FallbackUnreachable {
		t.Fatalf("fallback: %v %s", r.header, r.body)
	}
	if st := decoder.KVTransferStats(); st.P2PPulls != 1 || st.P2PPullTokens != 96 {
		t.Fatalf("decoder stats after the fallback %+v", st)
	}
	fams := scrape(t, c, decoder)
	for leg, want := range map[string]float64{"prefill": 2, "local": 1} {
		if got := count(t, fams, "openepp_pd_sidecar_p2p_pulls_total", "leg", leg); got != want {
			t.Errorf("p2p pulls{leg=%s} = %v, want %v", leg, got, want)
		}
	}
}
