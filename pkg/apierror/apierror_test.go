package apierror

import (
	"encoding/json"
	"testing"
)

func TestAnthropicBody(t *testing.T) {
	for status, want := range map[int]string{
		400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
		404: "not_found_error", 413: "request_too_large", 422: "invalid_request_error",
		429: "rate_limit_error", 500: "api_error", 502: "api_error", 503: "overloaded_error",
		504: "timeout_error", 529: "overloaded_error",
	} {
		var got AnthropicBody
		if err := json.Unmarshal(Anthropic(status, "why"), &got); err != nil {
			t.Fatalf("%d: %v", status, err)
		}
		if got.Type != "error" || got.Error.Type != want || got.Error.Message != "why" {
			t.Errorf("%d: got %+v, want type %q", status, got, want)
		}
	}
}
