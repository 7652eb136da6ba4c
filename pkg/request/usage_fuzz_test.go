package request

import (
	"bytes"
	"encoding/json"
	"testing"
)

// usageSeeds are response bodies and stream events from the tests above and
// the forms model servers send.
var usageSeeds = []string{
	`{"id":"x","choices":[{"text":"usage"}],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":8}}}`,
	`{"usage":{"prompt_tokens":4,"completion_tokens":1,"prompt_token_details":{"cached_tokens":2}}}`,
	`{"object":"response","usage":{"input_tokens":3,"output_tokens":2,"total_tokens":5,"input_tokens_details":{"cached_tokens":1}}}`,
	`{"type":"response.completed","response":{"id":"r","usage":{"input_tokens":7,"output_tokens":1}}}`,
	`{"usage":null}`,
	`{"choices":[]}`,
	`{"usage":{"prompt_tokens":1`,
	`{"usage":{"prompt_tokens":1.5}}`,
	`{"usage":{},"usage":{"prompt_tokens":2}}`,
	`{"us\u0061ge":{"prompt_tokens":2}}`,
	"data: {\"choices\":[{\"text\":\"a\"}],\"usage\":null}\n\n" +
		"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15," +
		"\"prompt_tokens_details\":{\"cached_tokens\":4}}}\r\n\r\ndata: [DONE]\n\n",
	"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":7,\"output_tokens\":1}}}",
	"data:{\"usage\":{\"prompt_tokens\":1}}\r\n: keep-alive\n\ndata: {\"usage\":{\"prompt_tokens\":2}}\n",
	"data: {\"choices\":[]}\r\rdata: {\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\r\r",
}

// FuzzStreamUsage checks that how the proxy happens to chunk an SSE stream
// never changes the usage read from it: any split (empty chunks included)
// gives what one Write of the whole stream gives, and the partial line
// kept between chunks stays within maxSSELine.
func FuzzStreamUsage(f *testing.F) {
	for i, s := range usageSeeds {
		f.Add([]byte(s), []byte{byte(i), 3, 0, 17})
	}
	f.Fuzz(func(t *testing.T, stream, cuts []byte) {
		var whole StreamUsage
		whole.Write(stream)
		whole.Flush()
		want, wantOK := whole.Usage()

		var split StreamUsage
		for _, c := range splitAt(stream, cuts) {
			split.Write(c)
			if len(split.partial) > maxSSELine {
				t.Fatalf("partial line grew to %d bytes", len(split.partial))
			}
		}
		split.Flush()
		if got, ok := split.Usage(); got != want || ok != wantOK {
			t.Fatalf("stream %q split by %v: usage %+v, %v; whole stream gives %+v, %v", stream, cuts, got, ok, want, wantOK)
		}
	})
}

// splitAt cuts b into chunks whose lengths are the bytes of cuts (a zero
// makes an empty chunk); what is left after the last cut is the last chunk.
func splitAt(b, cuts []byte) [][]byte {
	var out [][]byte
	for _, c := range cuts {
		n := min(int(c), len(b))
		out = append(out, b[:n:n])
		b = b[n:]
	}
	return append(out, b)
}

// FuzzParseUsage compares ParseUsage with encoding/json: a body that is not
// one valid JSON value has no usage, and a valid one has exactly the usage
// object found at the top level or, failing that, under "response".
func FuzzParseUsage(f *testing.F) {
	for _, s := range usageSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, ok := ParseUsage(body)
		if ok && !json.Valid(body) {
			t.Fatalf("ParseUsage(%q) read usage from invalid JSON", body)
		}
		if bytes.Contains(body, []byte(`\u`)) {
			// Keys are compared as written; encoding/json unescapes them
			// ("us\u0061ge" is "usage" to it, not to ParseUsage). No other
			// escape can spell a key ParseUsage looks for.
			return
		}
		want, wantOK := referenceUsage(body)
		if got != want || ok != wantOK {
			t.Fatalf("ParseUsage(%q) = %+v, %v; encoding/json reads %+v, %v", body, got, ok, want, wantOK)
		}
	})
}

// referenceUsage is ParseUsage written with encoding/json.
func referenceUsage(body []byte) (Usage, bool) {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return Usage{}, false
	}
	raw, found := top["usage"]
	if nested, ok := top["response"]; !found && ok {
		var inner map[string]json.RawMessage
		if json.Unmarshal(nested, &inner) == nil {
			raw, found = inner["usage"]
		}
	}
	if !found || len(raw) == 0 || raw[0] != '{' {
		return Usage{}, false
	}
	var w wireUsage
	if json.Unmarshal(raw, &w) != nil {
		return Usage{}, false
	}
	return w.usage(), true
}
