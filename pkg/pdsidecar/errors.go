package pdsidecar

import (
	"encoding/json"
	"net/http"

	"github.com/openepp/openepp/pkg/apierror"
)

// messagesPath is vLLM's Anthropic Messages endpoint.
const messagesPath = "/v1/messages"

// isMessagesRequest reports whether r is on the Anthropic Messages API. It
// matches the path exactly, as disaggregation does (disaggregatedPaths), so
// the two agree; /v1/messages/count_tokens is not a Messages request.
func isMessagesRequest(r *http.Request) bool { return r.URL.Path == messagesPath }

// writeError answers an error the sidecar itself decided on, in the shape
// of r's API: Anthropic clients (the SDKs, Claude Code) parse only
// Anthropic's, so a Messages request gets that one, everything else
// OpenAI's.
func writeError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	var body any
	if isMessagesRequest(r) {
		e := apierror.AnthropicBody{Type: "error"}
		e.Error.Type, e.Error.Message = apierror.AnthropicType(status), msg
		body = e
	} else {
		var e apierror.OpenAIBody
		e.Error.Message, e.Error.Type, e.Error.Code = msg, http.StatusText(status), status
		body = e
	}
	b, _ := json.Marshal(body) // cannot fail: strings and ints only
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
