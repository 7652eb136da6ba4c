package epp

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestDebugPages checks the plugin-state and endpoints pages of a running
// EPP: JSON in the documented shape, the default config's stateful plugins
// present, the pool listed with fresh metrics, and anything but a local GET
// refused.
func TestDebugPages(t *testing.T) {
	t.Parallel()
	r := startEPP(t, 2, 0)
	r.route(t, `{"model":"m","prompt":"remember this prefix in the index"}`)
	get := func(path string) (int, []byte) {
		resp, err := http.Get("http://" + r.addrs.Metrics + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	code, body := get(pluginStatePath)
	var state struct {
		Timestamp string `json:"timestamp"`
		Plugins   map[string]struct {
			Type  string          `json:"type"`
			State json.RawMessage `json:"state"`
		} `json:"plugins"`
	}
	if code != 200 || json.Unmarshal(body, &state) != nil || state.Timestamp == "" {
		t.Fatalf("%s: %d %s", pluginStatePath, code, body)
	}
	types := map[string]bool{}
	for _, p := range state.Plugins {
		types[p.Type] = true
	}
	for _, want := range []string{"approx-prefix-cache-producer", "queue-scorer"} {
		if !types[want] {
			t.Errorf("plugin state lacks a %s entry: %s", want, body)
		}
	}
	eventually(t, "both endpoints fresh on the endpoints page", func() bool {
		code, body := get(endpointsPath)
		var eps []endpointState
		if code != 200 || json.Unmarshal(body, &eps) != nil || len(eps) != 2 {
			return false
		}
		return eps[0].Name == "s0" && eps[1].Name == "s1" && !eps[0].Stale && !eps[1].Stale &&
			!strings.Contains(string(body), `"node"`) && // absent when unknown
			eps[0].AgeSeconds != nil && eps[0].CacheBlockSize > 0
	})
	// A dead endpoint says why it is stale.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().(*net.TCPAddr)
	l.Close()
	r.writeEndpoints(t, append(r.entries, fmt.Sprintf("- {name: s9, address: 127.0.0.1, port: %d, node: host-9}\n", dead.Port))...)
	eventually(t, "the dead endpoint's node and failing scrapes on the page", func() bool {
		var eps []endpointState
		r.debugJSON(t, endpointsPath, &eps)
		for _, e := range eps {
			if e.Name == "s9" {
				return e.Node == "host-9" && e.Stale && e.ScrapeFailing != nil && e.ScrapeFailing.Reason == "connection_refused" && e.ScrapeFailing.Consecutive >= 1
			}
		}
		return false
	})
	var fc flowControlState
	r.debugJSON(t, flowControlPath, &fc)
	if fc.Enabled || fc.Requests != 0 || len(fc.Bands) != 0 {
		t.Errorf("%s without flow control: %+v", flowControlPath, fc)
	}
	resp, err := http.Post("http://"+r.addrs.Metrics+endpointsPath, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST %s answered %d, want 405", endpointsPath, resp.StatusCode)
	}
}

// debugJSON GETs a debug page and decodes it into v.
func (r *running) debugJSON(t *testing.T, path string, v any) {
	t.Helper()
	resp, err := http.Get("http://" + r.addrs.Metrics + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("%s: %v: %s", path, err, body)
	}
}

// TestDebugPagesLocalOnly checks the loopback rule on a request from
// another address (the handler sees RemoteAddr only).
func TestDebugPagesLocalOnly(t *testing.T) {
	t.Parallel()
	h := loopbackGET(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) })
	for addr, want := range map[string]int{"127.0.0.1:5000": 200, "[::1]:5000": 200, "10.1.2.3:5000": 403, "garbage": 403} {
		req := httptest.NewRequest(http.MethodGet, endpointsPath, nil)
		req.RemoteAddr = addr
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("from %s: %d, want %d", addr, rec.Code, want)
		}
	}
}
