package pdsidecar_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/openepp/openepp/pkg/pdsidecar"
)

// p2pOf returns the p2p block of a recorded body's kv_transfer_params, nil
// when there is none, after checking its kv_request_id is a UUID (then
// blanked, so blocks compare).
func p2pOf(t *testing.T, body map[string]any) map[string]any {
	t.Helper()
	kv, _ := body["kv_transfer_params"].(map[string]any)
	p2p, _ := kv["p2p"].(map[string]any)
	if p2p == nil {
		return nil
	}
	id, _ := p2p["kv_request_id"].(string)
	if _, err := uuid.Parse(id); err != nil {
		t.Fatalf("kv_request_id %q is not a UUID", id)
	}
	p2p["kv_request_id"] = ""
	return p2p
}

func block(host string, port float64) map[string]any {
	return map[string]any{"kv_request_id": "", "remote_host": host, "remote_port": port}
}

func TestP2PBlockOnTheLocalRequest(t *testing.T) {
	t.Parallel()
	const clientP2P = `{"prompt":"x","kv_transfer_params":{"keep":1,"p2p":{"kv_request_id":"123e4567-e89b-12d3-a456-426614174000","remote_host":"evil","remote_port":1}}}`
	for _, tc := range []struct {
		name, source, body string
		connectorPort      int
		want               map[string]any
	}{
		{name: "header port", source: "10.0.0.7:8000", body: `{"prompt":"x"}`, want: block("10.0.0.7", 8000)},
		{name: "connector port", source: "10.0.0.7:8000", body: `{"prompt":"x"}`, connectorPort: 7777, want: block("10.0.0.7", 7777)},
		{name: "ipv6", source: "[FD00::1]:8000", body: `{"prompt":"x","kv_transfer_params":null}`, want: block("fd00::1", 8000)},
		{name: "host name", source: "Pod-A.ns:8000", body: `{"prompt":"x","kv_transfer_params":{}}`, want: block("pod-a.ns", 8000)},
		{name: "client block replaced", source: "10.0.0.7:8000", body: clientP2P, want: block("10.0.0.7", 8000)},
		{name: "no header keeps the client's block", body: clientP2P, want: block("evil", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, local, _, _ := microscope(t, pdsidecar.Options{P2PConnectorPort: tc.connectorPort})
			var header []string
			if tc.source != "" {
				header = []string{pdsidecar.KVSourceHeader, tc.source}
			}
			if w := serve(h, http.MethodPost, "/v1/completions", "", tc.body, header...); w.Code != http.StatusOK {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			lh, lb, _ := local.last(t)
			if lh.Get(pdsidecar.KVSourceHeader) != "" {
				t.Fatal("the source header reached the model server")
			}
			if diff := cmp.Diff(tc.want, p2pOf(t, lb)); diff != "" {
				t.Fatalf("p2p block (-want +got):\n%s", diff)
			}
			if strings.Contains(tc.body, "keep") && lb["kv_transfer_params"].(map[string]any)["keep"] != 1.0 {
				t.Fatalf("the client's other kv_transfer_params were lost: %v", lb)
			}
		})
	}
}

func TestP2PRequestIDsAreFresh(t *testing.T) {
	t.Parallel()
	h, local, _, _ := microscope(t, pdsidecar.Options{})
	seen := map[any]bool{}
	for range 3 {
		serve(h, http.MethodPost, "/v1/completions", "", `{"prompt":"x"}`, pdsidecar.KVSourceHeader, "10.0.0.7:8000")
		_, lb, _ := local.last(t)
		id := lb["kv_transfer_params"].(map[string]any)["p2p"].(map[string]any)["kv_request_id"]
		if seen[id] {
			t.Fatalf("kv_request_id %v reused", id)
		}
		seen[id] = true
	}
}

func TestP2PBlockOnThePrefillRequest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		source        func(prefiller string) string
		connectorPort int
		want          func(prefiller string) map[string]any
	}{
		{name: "another server", source: func(string) string { return "10.0.0.7:8000" },
			want: func(string) map[string]any { return block("10.0.0.7", 8000) }},
		{name: "the prefiller", source: func(p string) string { return p },
			want: func(string) map[string]any { return nil }},
		{name: "the prefiller's host, connector port", source: func(p string) string { return strings.Split(p, ":")[0] + ":1" },
			connectorPort: 7777, want: func(string) map[string]any { return nil }},
		{name: "the prefiller's host, header port", source: func(p string) string { return strings.Split(p, ":")[0] + ":1" },
			want: func(p string) map[string]any { return block(strings.Split(p, ":")[0], 1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, local, prefiller, addr := microscope(t, pdsidecar.Options{P2PConnectorPort: tc.connectorPort})
			body := `{"prompt":"x","kv_transfer_params":{"p2p":{"remote_host":"evil","remote_port":1}}}`
			if w := serve(h, http.MethodPost, "/v1/completions", addr, body, pdsidecar.KVSourceHeader, tc.source(addr)); w.Code != http.StatusOK {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			ph, pb, _ := prefiller.last(t)
			if diff := cmp.Diff(tc.want(addr), p2pOf(t, pb)); diff != "" {
				t.Fatalf("prefill p2p block (-want +got):\n%s", diff)
			}
			if kv := pb["kv_transfer_params"].(map[string]any); kv["do_remote_decode"] != true || ph.Get(pdsidecar.KVSourceHeader) != "" {
				t.Fatalf("prefill request %v %v", ph, pb)
			}
			if _, lb, _ := local.last(t); p2pOf(t, lb) != nil {
				t.Fatalf("the decode request carries a p2p block: %v", lb)
			}
		})
	}
}

// TestP2PSourceIsSelf: the local server is known by the address the
// request reached the sidecar at.
func TestP2PSourceIsSelf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		connectorPort int
		source        func(self string) string
		pull          bool
	}{
		{"same address", 0, func(s string) string { return s }, false},
		{"same host, header port", 0, func(string) string { return "127.0.0.1:1" }, true},
		{"same host, connector port", 7777, func(string) string { return "127.0.0.1:1" }, false},
		{"other host, connector port", 7777, func(string) string { return "127.0.0.2:1" }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, local, _, _ := microscope(t, pdsidecar.Options{P2PConnectorPort: tc.connectorPort})
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			self := strings.TrimPrefix(srv.URL, "http://")
			if r := sendWith(t, client(t), srv.URL+"/v1/completions", `{"prompt":"x"}`, pdsidecar.KVSourceHeader, tc.source(self)); r.status != http.StatusOK {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if _, lb, _ := local.last(t); (p2pOf(t, lb) != nil) != tc.pull {
				t.Fatalf("local request %v, want a p2p block: %t", lb, tc.pull)
			}
		})
	}
}

func TestP2PHeaderOnOtherPaths(t *testing.T) {
	t.Parallel()
	h, local, _, _ := microscope(t, pdsidecar.Options{})
	for _, path := range []string{"/v1/models", "/v1/responses", "/v1/embeddings"} {
		w := serve(h, http.MethodPost, path, "", `{"input":"x"}`, pdsidecar.KVSourceHeader, "10.0.0.7:8000")
		lh, lb, got := local.last(t)
		if got != path || lh.Get(pdsidecar.KVSourceHeader) != "" || lb["kv_transfer_params"] != nil || w.Header().Get(pdsidecar.FallbackHeader) != "" {
			t.Errorf("%s: local saw %s %v %v; answer headers %v", path, got, lh, lb, w.Header())
		}
	}
}

// unreachable is a prefill transport whose every call fails.
type unreachable struct{}

func (unreachable) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("connection refused")
}

// TestP2POnFallback: a failed prefill leaves the local server to compute
// the prompt, so it pulls; without the header the body is the client's.
func TestP2POnFallback(t *testing.T) {
	t.Parallel()
	h, local, _, _ := microscope(t, pdsidecar.Options{Transport: unreachable{}})
	body := `{"prompt":"x","kv_transfer_params":{"p2p":{"kv_request_id":"123e4567-e89b-12d3-a456-426614174000","remote_host":"c","remote_port":1}}}`
	for _, tc := range []struct {
		name   string
		header []string
		want   map[string]any
	}{
		{"no source", nil, block("c", 1)},
		{"source", []string{pdsidecar.KVSourceHeader, "10.0.0.7:8000"}, block("10.0.0.7", 8000)},
	} {
		w := serve(h, http.MethodPost, "/v1/completions", "10.0.0.9:8000", body, tc.header...)
		if w.Code != http.StatusOK || w.Header().Get(pdsidecar.FallbackHeader) != pdsidecar.FallbackUnreachable {
			t.Fatalf("%s: %d %v", tc.name, w.Code, w.Header())
		}
		if _, lb, _ := local.last(t); !cmp.Equal(tc.want, p2pOf(t, lb)) {
			t.Errorf("%s: local request %v, want p2p %v", tc.name, lb, tc.want)
		}
	}
}
