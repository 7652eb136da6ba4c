package pdsidecar_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/pdsidecar"
)

// recorder is a model server under the microscope: it records what it is
// sent and answers 200 with answer.
type recorder struct {
	answer string

	mu     sync.Mutex
	header []http.Header
	body   []map[string]any
	paths  []string
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var fields map[string]any
	_ = json.Unmarshal(b, &fields)
	rec.mu.Lock()
	rec.header = append(rec.header, r.Header.Clone())
	rec.body = append(rec.body, fields)
	rec.paths = append(rec.paths, r.URL.Path)
	rec.mu.Unlock()
	if cl := r.Header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(b)) {
		http.Error(w, "content length "+cl+" for "+strconv.Itoa(len(b))+" bytes", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, rec.answer)
}

func (rec *recorder) last(t *testing.T) (http.Header, map[string]any, string) {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.body) == 0 {
		t.Fatal("nothing received")
	}
	n := len(rec.body) - 1
	return rec.header[n], rec.body[n], rec.paths[n]
}

// prefillAnswer is a prefiller's answer as vLLM's NixlConnector gives it.
const prefillAnswer = `{"choices":[{"text":"x"}],"kv_transfer_params":{"do_remote_prefill":true,"do_remote_decode":false,` +
	`"remote_block_ids":[4,5],"remote_engine_id":"eng","remote_host":"10.0.0.9","remote_port":5600}}`

// microscope starts a recording prefiller and returns a sidecar in front of
// a recording local server.
func microscope(t *testing.T, o pdsidecar.Options) (h http.Handler, local, prefiller *recorder, prefillerAddr string) {
	t.Helper()
	local, prefiller = &recorder{answer: `{"ok":true}`}, &recorder{answer: prefillAnswer}
	srv := httptest.NewServer(prefiller)
	t.Cleanup(srv.Close)
	o.Local = local
	sc, err := pdsidecar.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sc.CloseIdleConnections)
	return sc, local, prefiller, strings.TrimPrefix(srv.URL, "http://")
}

func serve(h http.Handler, method, path, prefiller, body string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if prefiller != "" {
		req.Header.Set(pdsidecar.PrefillerHeader, prefiller)
	}
	for j := 0; j+1 < len(header); j += 2 {
		req.Header.Set(header[j], header[j+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestPrefillAndDecodeRequests(t *testing.T) {
	t.Parallel()
	h, local, prefiller, addr := microscope(t, pdsidecar.Options{})
	body := `{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5,` +
		`"max_completion_tokens":7,"stream":true,"stream_options":{"include_usage":true}}`
	w := serve(h, http.MethodPost, "/v1/chat/completions?x=1", addr, body, "Authorization", "Bearer k", "x-request-id", "r1")
	if w.Code != http.StatusOK || w.Header().Get(pdsidecar.PrefilledByHeader) != addr {
		t.Fatalf("answer %d %v", w.Code, w.Header())
	}
	ph, pb, path := prefiller.last(t)
	wantPrefill := map[string]any{
		"model": "m", "messages": []any{map[string]any{"role": "user", "content": "hi"}}, "temperature": 0.5,
		"max_tokens": 1.0, "max_completion_tokens": 1.0, "stream": false,
		"kv_transfer_params": map[string]any{"do_remote_decode": true, "do_remote_prefill": false,
			"remote_engine_id": nil, "remote_block_ids": nil, "remote_host": nil, "remote_port": nil},
	}
	if diff := cmp.Diff(wantPrefill, pb); diff != "" || path != "/v1/chat/completions" {
		t.Fatalf("prefill request to %s (-want +got):\n%s", path, diff)
	}
	if ph.Get("Authorization") != "Bearer k" || ph.Get("x-request-id") != "r1" || ph.Get(pdsidecar.PrefillerHeader) != "" {
		t.Fatalf("prefill headers %v", ph)
	}
	lh, lb, _ := local.last(t)
	var want map[string]any
	_ = json.Unmarshal([]byte(body), &want)
	_ = json.Unmarshal([]byte(`{"kv_transfer_params":{"do_remote_prefill":true,"do_remote_decode":false,`+
		`"remote_block_ids":[4,5],"remote_engine_id":"eng","remote_host":"10.0.0.9","remote_port":5600}}`), &want)
	if diff := cmp.Diff(want, lb); diff != "" {
		t.Fatalf("decode request (-want +got):\n%s", diff)
	}
	if lh.Get(pdsidecar.PrefillerHeader) != "" || lh.Get("Authorization") != "Bearer k" {
		t.Fatalf("decode headers %v", lh)
	}
	// Completions without max_completion_tokens get none.
	serve(h, http.MethodPost, "/v1/completions", addr, `{"prompt":"x","max_tokens":9}`)
	if _, pb, _ := prefiller.last(t); pb["max_tokens"] != 1.0 || pb["max_completion_tokens"] != nil {
		t.Fatalf("completions prefill %v", pb)
	}
}

func TestOtherPathsNeverSeeTheHeader(t *testing.T) {
	t.Parallel()
	h, local, prefiller, addr := microscope(t, pdsidecar.Options{})
	for _, tc := range []struct {
		method, path, fallback string
	}{
		{http.MethodGet, "/v1/models", ""},
		{http.MethodGet, "/v1/completions", ""}, // not a POST: the server's 405
		{http.MethodPost, "/v1/embeddings", ""},
		{http.MethodPost, "/v1/responses", pdsidecar.FallbackUnsupportedPath},
		{http.MethodPost, "/generate", pdsidecar.FallbackUnsupportedPath},
	} {
		w := serve(h, tc.method, tc.path, addr, `{"input":"x"}`)
		lh, _, path := local.last(t)
		if path != tc.path || lh.Get(pdsidecar.PrefillerHeader) != "" || w.Header().Get(pdsidecar.FallbackHeader) != tc.fallback {
			t.Errorf("%s %s: local saw %s %v; answer headers %v", tc.method, tc.path, path, lh, w.Header())
		}
	}
	prefiller.mu.Lock()
	defer prefiller.mu.Unlock()
	if len(prefiller.body) != 0 {
		t.Fatalf("a prefill ran for a path that is not disaggregated")
	}
}

// answerKV is a prefill transport under the microscope: every call gets
// prefillAnswer, so allowlist cases need no listener at those addresses.
type answerKV struct{}

func (answerKV) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(prefillAnswer)), Request: r,
	}, nil
}

func TestAllowlistEntries(t *testing.T) {
	t.Parallel()
	h, _, _, _ := microscope(t, pdsidecar.Options{Transport: answerKV{},
		AllowedPrefillers: []string{"10.1.0.0/16", "10.2.3.4", "Pod.ns.svc:8000", "[fd00::1]:9000"}})
	for prefiller, want := range map[string]int{
		"10.1.5.5:80":         200,
		"10.2.3.4:1":          200,
		"10.2.3.5:1":          403,
		"pod.ns.svc:8000":     200,
		"POD.NS.svc:8000":     200,
		"pod.ns.svc:8001":     403,
		"[fd00::1]:9000":      200,
		"[fd00::1]:9001":      403,
		"[::ffff:10.1.0.1]:8": 200,
		"127.0.0.1:80":        403,
		"10.1.5.5.nip.io:80":  403,
	} {
		if w := serve(h, http.MethodPost, "/v1/completions", prefiller, `{"prompt":"x"}`); w.Code != want {
			t.Errorf("%s: %d, want %d (%s)", prefiller, w.Code, want, w.Body)
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	t.Parallel()
	local := &recorder{}
	reg := prometheus.NewRegistry()
	if _, err := pdsidecar.New(pdsidecar.Options{Local: local, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    pdsidecar.Options
		want string
	}{
		{"no local", pdsidecar.Options{}, "Local is required"},
		{"negative timeout", pdsidecar.Options{Local: local, PrefillTimeout: -1}, "must be ≥ 0"},
		{"negative connector port", pdsidecar.Options{Local: local, P2PConnectorPort: -1}, "not in 0..65535"},
		{"connector port too big", pdsidecar.Options{Local: local, P2PConnectorPort: 65536}, "not in 0..65535"},
		{"bad allowlist", pdsidecar.Options{Local: local, AllowedPrefillers: []string{"10.0.0.0/8", "nope!", "10.0.0.0/33"}},
			`[1]: "nope!" is not a CIDR`},
		{"registered twice", pdsidecar.Options{Local: local, Registerer: reg}, "register metrics"},
	} {
		if _, err := pdsidecar.New(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}
