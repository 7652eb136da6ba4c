// Package apierror holds the error bodies of the two API families the EPP,
// the simulator and the P/D sidecar answer: OpenAI's (vLLM's shape) and the
// Anthropic Messages API's. Anthropic's SDKs (and Claude Code) decode only
// theirs, and pick what to retry by its type, so the three must agree on the
// mapping from status.
package apierror

import (
	"encoding/json"
	"net/http"
)

// AnthropicType is the error type Anthropic's API gives with status.
func AnthropicType(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid_request_error"
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case http.StatusGatewayTimeout:
		return "timeout_error"
	case http.StatusServiceUnavailable, 529: // 529: Anthropic's own "overloaded"
		return "overloaded_error"
	}
	if status < 500 {
		return "invalid_request_error"
	}
	return "api_error"
}

// AnthropicBody is the Messages API's error body.
type AnthropicBody struct {
	Type  string `json:"type"` // always "error"
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// Anthropic returns the JSON error body for status and msg.
func Anthropic(status int, msg string) []byte {
	e := AnthropicBody{Type: "error"}
	e.Error.Type, e.Error.Message = AnthropicType(status), msg
	b, _ := json.Marshal(e) // cannot fail: strings only
	return b
}

// OpenAIBody is the OpenAI-compatible APIs' error body, as vLLM writes it.
type OpenAIBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    int     `json:"code"`
	} `json:"error"`
}
