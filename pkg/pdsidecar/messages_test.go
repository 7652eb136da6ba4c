package pdsidecar_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/openepp/openepp/pkg/pdsidecar"
	"github.com/openepp/openepp/test/pdsim"
)

// TestDisaggregatedMessages: an Anthropic Messages request is prefilled on
// the named server and decoded locally, streamed or not, as chat is; the
// decoder's usage shows the pulled prompt as cache reads.
func TestDisaggregatedMessages(t *testing.T) {
	t.Parallel()
	servers := pdsim.Start(t, 2, pdsim.Options{})
	decoder, prefiller := servers[0], servers[1]
	c := client(t)
	for _, stream := range []bool{false, true} {
		body := fmt.Sprintf(`{"model":"sim-model","max_tokens":4,"stream":%v,"system":"be brief","messages":[{"role":"user","content":%q}]}`,
			stream, strings.Repeat("m ", 150+btoi(stream)))
		r := send(t, c, decoder.URL()+"/v1/messages", prefiller.HostPort(), body)
		if r.status != http.StatusOK || r.header.Get(pdsidecar.PrefilledByHeader) != prefiller.HostPort() ||
			r.header.Get(pdsidecar.FallbackHeader) != "" {
			t.Fatalf("stream %v: status %d, headers %v: %s", stream, r.status, r.header, r.body)
		}
		input, cacheRead, output := messagesUsage(t, r.body, stream)
		if input != 1 || cacheRead < 150 || output != 4 {
			t.Errorf("stream %v: usage input %d cache_read %d output %d, want the prompt pulled (1 computed) and 4 out",
				stream, input, cacheRead, output)
		}
	}
	if got := prefiller.KVTransferStats(); got.RemoteDecodeRequests != 2 {
		t.Errorf("prefiller stats %+v, want 2 prefills served", got)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// messagesUsage reads an Anthropic answer's usage: the JSON body's, or the
// stream's message_start (prompt) and message_delta (output) events.
func messagesUsage(t *testing.T, body []byte, stream bool) (input, cacheRead, output int) {
	t.Helper()
	type usage struct {
		Input     int `json:"input_tokens"`
		CacheRead int `json:"cache_read_input_tokens"`
		Output    int `json:"output_tokens"`
	}
	if !stream {
		var a struct{ Usage usage }
		if err := json.Unmarshal(body, &a); err != nil {
			t.Fatalf("answer %s: %v", body, err)
		}
		return a.Usage.Input, a.Usage.CacheRead, a.Usage.Output
	}
	for _, line := range strings.Split(string(body), "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		var ev struct {
			Type    string
			Message struct{ Usage usage }
			Usage   usage
		}
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatalf("event %s: %v", data, err)
		}
		switch ev.Type {
		case "message_start":
			input, cacheRead = ev.Message.Usage.Input, ev.Message.Usage.CacheRead
		case "message_delta":
			output = ev.Usage.Output
		}
	}
	return input, cacheRead, output
}

// TestDisaggregatedGenerate: a token-in request is prefilled on the named
// server with sampling_params.max_tokens 1 (its other sampling parameters
// kept) and decoded locally to its own max_tokens, streamed or not.
func TestDisaggregatedGenerate(t *testing.T) {
	t.Parallel()
	servers := pdsim.Start(t, 2, pdsim.Options{})
	decoder, prefiller := servers[0], servers[1]
	c := client(t)
	ids := strings.TrimSuffix(strings.Repeat("11,", 200), ",")
	for _, stream := range []bool{false, true} {
		body := fmt.Sprintf(`{"token_ids":[%s,%d],"sampling_params":{"max_tokens":5,"temperature":0},"stream":%v,"stream_options":{"include_usage":true}}`,
			ids, btoi(stream), stream)
		r := send(t, c, decoder.URL()+"/inference/v1/generate", prefiller.HostPort(), body)
		if r.status != http.StatusOK || r.header.Get(pdsidecar.PrefilledByHeader) != prefiller.HostPort() ||
			r.header.Get(pdsidecar.FallbackHeader) != "" {
			t.Fatalf("stream %v: status %d, headers %v: %s", stream, r.status, r.header, r.body)
		}
		a, _ := parseAnswer(t, r)
		if u := a.Usage; u == nil || u.Prompt != 201 || u.Completion != 5 || u.Details.Cached < 200 {
			t.Errorf("stream %v: usage %+v, want 201 prompt tokens pulled and 5 out: %s", stream, u, r.body)
		}
	}
	if got := prefiller.KVTransferStats(); got.RemoteDecodeRequests != 2 {
		t.Errorf("prefiller stats %+v, want 2 prefills served", got)
	}
}
