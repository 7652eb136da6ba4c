package pdsidecar_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/pdsidecar"
)

// TestErrorShapeFollowsTheAPI: the sidecar's own errors are Anthropic's
// shape on the Messages API, so Anthropic clients can read them, and
// OpenAI's elsewhere.
func TestErrorShapeFollowsTheAPI(t *testing.T) {
	t.Parallel()
	// Nothing listens at the local server, so a request the sidecar lets
	// through ends in its 502; prefills all succeed without a network.
	local, err := pdsidecar.LocalURL("http://" + closedPort(t))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	h, err := pdsidecar.New(pdsidecar.Options{
		Local: local, Transport: answerKV{}, Registerer: reg,
		AllowedPrefillers: []string{"10.0.0.0/8"}, MaxBodyBytes: 200,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.CloseIdleConnections)
	const allowed, denied = "10.0.0.1:8000", "127.0.0.1:8000"
	messages := `{"model":"m","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`
	tests := []struct {
		name, path, prefiller, body string
		status                      int
		anthropicType               string // "" expects OpenAI's shape
	}{
		{"not json", "/v1/messages", allowed, "prompt=hello", 400, "invalid_request_error"},
		{"prefiller not allowed", "/v1/messages", denied, messages, 403, "permission_error"},
		{"too big", "/v1/messages", allowed, strings.Repeat(" ", 201) + messages, 413, "request_too_large"},
		{"local unreachable", "/v1/messages", allowed, messages, 502, "api_error"},
		{"chat not json", "/v1/chat/completions", allowed, "prompt=hello", 400, ""},
		// Only the Messages endpoint itself is the Messages API.
		{"count_tokens local unreachable", "/v1/messages/count_tokens", "", messages, 502, ""},
	}
	for _, tc := range tests {
		w := serve(h, http.MethodPost, tc.path, tc.prefiller, tc.body)
		if w.Code != tc.status || w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %q, want %d application/json: %s", tc.name, w.Code, w.Header().Get("Content-Type"), tc.status, w.Body)
			continue
		}
		if tc.anthropicType != "" {
			checkAnthropicError(t, tc.name, w.Body.Bytes(), tc.anthropicType)
		} else {
			checkOpenAIError(t, tc.name, w.Body.Bytes(), tc.status)
		}
	}
	if got := count(t, gather(t, reg), "openepp_pd_sidecar_requests_total", "result", "rejected"); got != 4 {
		t.Errorf("rejected = %v, want 4", got)
	}
}

// decodeStrictly decodes body into v, failing on fields v does not have.
func decodeStrictly(t *testing.T, name string, body []byte, v any) bool {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Errorf("%s: body %s: %v", name, body, err)
		return false
	}
	return true
}

func checkAnthropicError(t *testing.T, name string, body []byte, wantType string) {
	t.Helper()
	var e struct {
		Type  *string `json:"type"`
		Error *struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if !decodeStrictly(t, name, body, &e) {
		return
	}
	if e.Type == nil || *e.Type != "error" || e.Error == nil || e.Error.Type != wantType || e.Error.Message == "" {
		t.Errorf("%s: %s, want an Anthropic error of type %s with a message", name, body, wantType)
	}
}

func checkOpenAIError(t *testing.T, name string, body []byte, status int) {
	t.Helper()
	var e struct {
		Error *struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    int     `json:"code"`
		} `json:"error"`
	}
	if !decodeStrictly(t, name, body, &e) {
		return
	}
	if e.Error == nil || e.Error.Code != status || e.Error.Message == "" || e.Error.Type == "" {
		t.Errorf("%s: %s, want an OpenAI error with code %d and a message", name, body, status)
	}
}
