package sim

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/sim/tokenize"
)

// p2pFor is kv_transfer_params naming hostPort as the P2P source, as the
// routing sidecar writes it.
func p2pFor(hostPort string) string {
	host, port, _ := net.SplitHostPort(hostPort)
	return fmt.Sprintf(`{"p2p":{"kv_request_id":"k-1","remote_host":%q,"remote_port":%s}}`, host, port)
}

// repeated is a prompt of n copies of w.
func repeated(w string, n int) string { return strings.TrimSpace(strings.Repeat(w+" ", n)) }

func TestParseP2P(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, raw string
		want      *p2pSource
		wantErr   string
	}{
		{name: "full", raw: `{"kv_request_id":"u","remote_host":"10.0.0.7","remote_port":7777}`, want: &p2pSource{host: "10.0.0.7", port: 7777}},
		{name: "no request id", raw: `{"remote_host":"pod-a.ns.svc","remote_port":1}`, want: &p2pSource{host: "pod-a.ns.svc", port: 1}},
		{name: "ipv6", raw: `{"remote_host":"fd00::1","remote_port":80,"extra":true}`, want: &p2pSource{host: "fd00::1", port: 80}},
		{name: "list", raw: `[1]`, wantErr: "p2p must be an object"},
		{name: "string", raw: `"10.0.0.1:80"`, wantErr: "p2p must be an object"},
		{name: "no host", raw: `{"remote_port":80}`, wantErr: "needs remote_host and remote_port"},
		{name: "null port", raw: `{"remote_host":"h","remote_port":null}`, wantErr: "needs remote_host and remote_port"},
		{name: "port as string", raw: `{"remote_host":"h","remote_port":"80"}`, wantErr: "p2p.remote_port: must be an integer"},
		{name: "port zero", raw: `{"remote_host":"h","remote_port":0}`, wantErr: "0 is not a port"},
		{name: "port too big", raw: `{"remote_host":"h","remote_port":65536}`, wantErr: "65536 is not a port"},
		{name: "host not a string", raw: `{"remote_host":7,"remote_port":80}`, wantErr: "p2p.remote_host: must be a string"},
		{name: "request id not a string", raw: `{"kv_request_id":1,"remote_host":"h","remote_port":80}`, wantErr: "p2p.kv_request_id: must be a string"},
		{name: "host with a path", raw: `{"remote_host":"h/admin?x=","remote_port":80}`, wantErr: "neither an IP address nor a host name"},
		{name: "host with user", raw: `{"remote_host":"u@h","remote_port":80}`, wantErr: "neither an IP address nor a host name"},
		{name: "host with port", raw: `{"remote_host":"h:80","remote_port":80}`, wantErr: "neither an IP address nor a host name"},
		{name: "zoned ip", raw: `{"remote_host":"fe80::1%eth0","remote_port":80}`, wantErr: "neither an IP address nor a host name"},
		{name: "empty host", raw: `{"remote_host":"","remote_port":80}`, wantErr: "neither an IP address nor a host name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseP2P(json.RawMessage(tc.raw))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(p2pSource{})); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
		})
	}
	// Inside kv_transfer_params, null is no source, and P2P sits beside
	// the P/D flags.
	for raw, want := range map[string]bool{`{"p2p":null}`: false, `{"do_remote_decode":true,"p2p":{"remote_host":"h","remote_port":9}}`: true} {
		kv, err := parseKVTransfer(json.RawMessage(raw))
		if err != nil || (kv.p2p != nil) != want {
			t.Errorf("%s: %+v, %v", raw, kv, err)
		}
	}
}

func TestP2PParamsErrors(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	bad := `{"p2p":{"remote_host":"h","remote_port":"x"}}`
	for _, tc := range []struct{ path, body string }{
		{"/v1/completions", `{"prompt":"x","kv_transfer_params":` + bad + `}`},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"kv_transfer_params":` + bad + `}`},
	} {
		checkKVError(t, post(t, c, inst.URL()+tc.path, tc.body), "p2p.remote_port: must be an integer")
	}
	r := post(t, c, inst.URL()+"/v1/messages", `{"model":"sim-model","messages":[{"role":"user","content":"x"}],"max_tokens":1,"kv_transfer_params":`+bad+`}`)
	if e := decode[anthropicErrorReply](t, r.body); r.status != http.StatusBadRequest || e.Type != "error" ||
		!strings.Contains(e.Error.Message, "kv_transfer_params.p2p.remote_port") {
		t.Fatalf("messages: %d %s", r.status, r.body)
	}
	if st := inst.KVTransferStats(); st != (KVTransferStats{}) {
		t.Fatalf("rejected requests were counted: %+v", st)
	}
}

// TestP2PPullFromPeer warms a peer, then sends each API's request to
// another instance naming the peer: the peer's blocks arrive as cached
// tokens, pulled rather than computed.
func TestP2PPullFromPeer(t *testing.T) {
	t.Parallel()
	peer, inst := start(t, quick()), start(t, quick())
	c := client(t)
	kv := p2pFor(peer.HostPort())
	chatOf := func(w string) string {
		return fmt.Sprintf(`{"messages":[{"role":"user","content":%q}],"max_completion_tokens":2`, repeated(w, 300))
	}
	cases := []struct {
		name, path, warm, body string
		held                   int // whole blocks of the peer's prompt
	}{
		{"completions", "/v1/completions", fmt.Sprintf(`{"prompt":%q,"max_tokens":1}`, repeated("a", 300)),
			fmt.Sprintf(`{"prompt":%q,"max_tokens":2,"kv_transfer_params":%s}`, repeated("a", 300)+" and more", kv), 288},
		{"chat", "/v1/chat/completions", chatOf("b") + "}", chatOf("b") + `,"kv_transfer_params":` + kv + "}",
			tokenize.Count(rendered("", repeated("b", 300))) / 16 * 16},
		{"messages", "/v1/messages", messagesBody("", repeated("m", 300), 1),
			strings.TrimSuffix(messagesBody("", repeated("m", 300), 2), "}") + `,"kv_transfer_params":` + kv + "}",
			tokenize.Count(rendered("", repeated("m", 300))) / 16 * 16},
	}
	pulled := 0
	for _, tc := range cases {
		if r := post(t, c, peer.URL()+tc.path, tc.warm); r.status != http.StatusOK {
			t.Fatalf("%s: warming the peer: %d %s", tc.name, r.status, r.body)
		}
		r := post(t, c, inst.URL()+tc.path, tc.body)
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", tc.name, r.status, r.body)
		}
		cached := 0
		if tc.path == "/v1/messages" {
			cached = *decode[messageAnswer](t, r.body).Usage.CacheRead
		} else {
			cached = decode[chunk](t, r.body).Usage.Details.Cached
		}
		if cached != tc.held {
			t.Fatalf("%s: %d cached tokens, want the peer's %d: %s", tc.name, cached, tc.held, r.body)
		}
		pulled += tc.held
	}
	want := KVTransferStats{P2PRequests: 3, P2PPulls: 3, P2PPullTokens: uint64(pulled)}
	if diff := cmp.Diff(want, inst.KVTransferStats()); diff != "" {
		t.Fatalf("stats (-want +got):\n%s", diff)
	}
	// Named again, the source adds nothing the local cache lacks: no pull.
	r := post(t, c, inst.URL()+"/v1/completions", cases[0].body)
	if got := decode[chunk](t, r.body).Usage.Details.Cached; got != 288 || inst.KVTransferStats().P2PPulls != 3 {
		t.Fatalf("second request: %d cached, stats %+v", got, inst.KVTransferStats())
	}
	// Without a source, nothing is pulled.
	post(t, c, peer.URL()+"/v1/completions", fmt.Sprintf(`{"prompt":%q,"max_tokens":1}`, repeated("z", 100)))
	r = post(t, c, inst.URL()+"/v1/completions", fmt.Sprintf(`{"prompt":%q,"max_tokens":1}`, repeated("z", 100)))
	if got := decode[chunk](t, r.body).Usage.Details.Cached; got != 0 || inst.KVTransferStats().P2PPulls != 3 {
		t.Fatalf("request without p2p: %d cached, stats %+v", got, inst.KVTransferStats())
	}
	_, text := scrapeText(t, c, inst)
	fams := parsePage(t, text)
	for name, v := range map[string]float64{
		"openepp_sim_kv_p2p_requests_total":        4,
		"openepp_sim_kv_p2p_pulls_total":           3,
		"openepp_sim_kv_p2p_pull_tokens_total":     float64(pulled),
		"openepp_sim_kv_p2p_lookup_failures_total": 0,
	} {
		if got := value(t, fams, name, map[string]string{"model_name": "sim-model"}); got != v {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
}

func TestP2PPullPerPrompt(t *testing.T) {
	t.Parallel()
	peer, inst := start(t, quick()), start(t, quick())
	c := client(t)
	post(t, c, peer.URL()+"/v1/completions", fmt.Sprintf(`{"prompt":%q,"max_tokens":1}`, repeated("p", 100)))
	r := post(t, c, inst.URL()+"/v1/completions", fmt.Sprintf(`{"prompt":[%q,%q],"max_tokens":1,"kv_transfer_params":%s}`,
		repeated("p", 100), repeated("q", 100), p2pFor(peer.HostPort())))
	if got := decode[chunk](t, r.body).Usage; r.status != http.StatusOK || got.Details.Cached != 96 {
		t.Fatalf("%d %s, want 96 cached (the first prompt's 6 blocks)", r.status, r.body)
	}
	if st := inst.KVTransferStats(); st.P2PPulls != 1 || st.P2PPullTokens != 96 || st.P2PRequests != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestP2PSourceFailures: a source that cannot say what it holds costs the
// request its pull, never the request.
func TestP2PSourceFailures(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	static := func(status int, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(status)
			_, _ = io.WriteString(w, body)
		}))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	sources := map[string]string{
		"closed port":      closed,
		"500":              static(500, `{"error":"boom"}`),
		"not json":         static(200, `<html>`),
		"too many counts":  static(200, `{"cached_tokens":[16,16]}`),
		"negative":         static(200, `{"cached_tokens":[-16]}`),
		"beyond prompt":    static(200, `{"cached_tokens":[100000]}`),
		"redirect":         static(http.StatusTemporaryRedirect, ``),
		"huge answer body": static(200, `{"cached_tokens":[0],"pad":"`+strings.Repeat("x", maxLookupAnswer)+`"}`),
	}
	for name, addr := range sources {
		r := post(t, c, inst.URL()+"/v1/completions",
			fmt.Sprintf(`{"prompt":%q,"max_tokens":1,"kv_transfer_params":%s}`, repeated("f", 40), p2pFor(addr)))
		if got := decode[chunk](t, r.body).Usage; r.status != http.StatusOK || got == nil || got.Completion != 1 {
			t.Fatalf("%s: %d %s", name, r.status, r.body)
		}
	}
	st := inst.KVTransferStats()
	if want := (KVTransferStats{P2PRequests: uint64(len(sources)), P2PLookupFailures: uint64(len(sources))}); st != want {
		t.Fatalf("stats %+v, want %+v", st, want)
	}
}

// TestP2PHangingSource: a source that never answers is given up after the
// lookup timeout, and the request served without it.
func TestP2PHangingSource(t *testing.T) {
	t.Parallel()
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) })
	inst := start(t, quick())
	begin := time.Now()
	r := post(t, client(t), inst.URL()+"/v1/completions",
		fmt.Sprintf(`{"prompt":"x y z","max_tokens":1,"kv_transfer_params":%s}`, p2pFor(strings.TrimPrefix(srv.URL, "http://"))))
	if took := time.Since(begin); r.status != http.StatusOK || took < p2pLookupTimeout || took > p2pLookupTimeout+2*time.Second {
		t.Fatalf("%d after %v: %s", r.status, took, r.body)
	}
	if st := inst.KVTransferStats(); st.P2PLookupFailures != 1 || st.P2PPulls != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestKVLookupEndpoint(t *testing.T) {
	t.Parallel()
	cfg := quick()
	cfg.LoRAs = []string{"ad"}
	inst := start(t, cfg)
	c := client(t)
	post(t, c, inst.URL()+"/v1/completions", fmt.Sprintf(`{"prompt":%q,"max_tokens":1,"cache_salt":"s"}`, repeated("k", 50)))
	post(t, c, inst.URL()+"/v1/completions", fmt.Sprintf(`{"model":"ad","prompt":%q,"max_tokens":1}`, repeated("k", 40)))
	ids, err := json.Marshal(tokenize.Append(nil, repeated("k", 50)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, body string
		status     int
		want       string
	}{
		{"salted", `{"prompts":[` + string(ids) + `,[1,2]],"cache_salt":"s"}`, 200, `{"cached_tokens":[48,0]}`},
		{"unsalted", `{"prompts":[` + string(ids) + `]}`, 200, `{"cached_tokens":[0]}`},
		{"other salt", `{"prompts":[` + string(ids) + `],"cache_salt":"t"}`, 200, `{"cached_tokens":[0]}`},
		{"adapter", `{"prompts":[` + string(ids) + `],"lora":"ad"}`, 200, `{"cached_tokens":[32]}`},
		{"unknown adapter", `{"prompts":[` + string(ids) + `],"lora":"zz"}`, 200, `{"cached_tokens":[0]}`},
		{"no prompts", `{"prompts":[]}`, 400, "non-empty list"},
		{"negative id", `{"prompts":[[-1]]}`, 400, "malformed JSON"},
		{"not json", `prompts`, 400, "malformed JSON"},
	} {
		r := post(t, c, inst.URL()+KVLookupPath, tc.body)
		if r.status != tc.status || !strings.Contains(string(r.body), tc.want) {
			t.Errorf("%s: %d %s, want %d with %s", tc.name, r.status, r.body, tc.status, tc.want)
		}
	}
}
