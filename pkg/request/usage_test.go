package request

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want Usage
		ok   bool
	}{
		{name: "chat", ok: true,
			body: `{"id":"x","choices":[{"text":"usage"}],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":8}}}`,
			want: Usage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15, CachedTokens: 8}},
		{name: "gie typo", ok: true,
			body: `{"usage":{"prompt_tokens":4,"completion_tokens":1,"prompt_token_details":{"cached_tokens":2}}}`,
			want: Usage{PromptTokens: 4, CompletionTokens: 1, TotalTokens: 5, CachedTokens: 2}},
		{name: "responses", ok: true,
			body: `{"object":"response","usage":{"input_tokens":3,"output_tokens":2,"total_tokens":5,"input_tokens_details":{"cached_tokens":1}}}`,
			want: Usage{PromptTokens: 3, CompletionTokens: 2, TotalTokens: 5, CachedTokens: 1}},
		{name: "responses completed event", ok: true,
			body: `{"type":"response.completed","response":{"id":"r","usage":{"input_tokens":7,"output_tokens":1}}}`,
			want: Usage{PromptTokens: 7, CompletionTokens: 1, TotalTokens: 8}},
		{name: "null usage", body: `{"usage":null}`},
		{name: "no usage", body: `{"choices":[]}`},
		{name: "invalid", body: `{"usage":{"prompt_tokens":1`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseUsage([]byte(tc.body))
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

func TestStreamUsageSplitAcrossChunks(t *testing.T) {
	t.Parallel()
	stream := "data: {\"choices\":[{\"text\":\"a\"}],\"usage\":null}\n\n" +
		"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15," +
		"\"prompt_tokens_details\":{\"cached_tokens\":4}}}\r\n\r\n" +
		"data: [DONE]\n\n"
	for split := 1; split < len(stream); split += 7 {
		var s StreamUsage
		for i := 0; i < len(stream); i += split {
			s.Write([]byte(stream[i:min(len(stream), i+split)]))
		}
		s.Flush()
		got, ok := s.Usage()
		want := Usage{PromptTokens: 12, CompletionTokens: 3, TotalTokens: 15, CachedTokens: 4}
		if !ok || got != want {
			t.Fatalf("split %d: usage = %+v, %v; want %+v", split, got, ok, want)
		}
	}
}

// TestStreamUsageLineEndings: SSE lines may end in "\n", "\r\n" or a bare
// "\r"; each form, however chunked, gives the stream's usage.
func TestStreamUsageLineEndings(t *testing.T) {
	t.Parallel()
	for _, eol := range []string{"\n", "\r\n", "\r"} {
		stream := "data: {\"choices\":[{\"text\":\"a\"}]}" + eol + eol +
			"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3}}" + eol + eol +
			"data: [DONE]" + eol + eol
		for split := 1; split <= len(stream); split++ {
			var s StreamUsage
			for i := 0; i < len(stream); i += split {
				s.Write([]byte(stream[i:min(len(stream), i+split)]))
			}
			got, ok := s.Usage() // no Flush: every line was terminated
			if want := (Usage{PromptTokens: 12, CompletionTokens: 3, TotalTokens: 15}); !ok || got != want {
				t.Fatalf("line ending %q, split %d: usage = %+v, %v; want %+v", eol, split, got, ok, want)
			}
		}
	}
}

func TestStreamUsageBoundsPartialLine(t *testing.T) {
	t.Parallel()
	var s StreamUsage
	big := make([]byte, maxSSELine/4)
	for i := 0; i < 8; i++ {
		s.Write(big)
	}
	if len(s.partial) > maxSSELine {
		t.Fatalf("partial line grew to %d bytes", len(s.partial))
	}
	s.Write([]byte("\ndata: {\"usage\":{\"prompt_tokens\":1}}\n"))
	if u, ok := s.Usage(); !ok || u.PromptTokens != 1 {
		t.Errorf("usage after oversized line = %+v, %v", u, ok)
	}
}

// TestStreamUsageSkipsOverlongLineWhole: a line longer than maxSSELine is
// skipped however it is chunked. Before, a stream cut inside such a line
// dropped the kept part and read the rest as a line of its own, so the
// tail "data: {...}" of a line that is not an event counted as usage, and
// the same line in one chunk was read whole: the result depended on where
// the proxy cut the body.
func TestStreamUsageSkipsOverlongLineWhole(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", maxSSELine+1) + `data: {"usage":{"prompt_tokens":9}}` + "\n"
	longEvent := `data: {"usage":{"prompt_tokens":9},"pad":"` + strings.Repeat("x", maxSSELine) + `"}` + "\n"
	for _, stream := range []string{long, longEvent} {
		for _, cut := range []int{0, 10, maxSSELine / 2, maxSSELine + 1, len(stream) - 2} {
			var s StreamUsage
			s.Write([]byte(stream[:cut]))
			s.Write([]byte(stream[cut:]))
			s.Flush()
			if u, ok := s.Usage(); ok {
				t.Errorf("line of %d bytes cut at %d: usage %+v, want none", len(stream), cut, u)
			}
		}
	}
}

// BenchmarkStreamUsage feeds a typical streamed completion, one event per
// chunk as the proxy forwards them, the last one carrying usage.
func BenchmarkStreamUsage(b *testing.B) {
	var chunks [][]byte
	for range 100 {
		chunks = append(chunks, []byte(`data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":" token","logprobs":null,"finish_reason":null}],"usage":null}`+"\n\n"))
	}
	chunks = append(chunks, []byte(`data: {"id":"cmpl-1","choices":[],"usage":{"prompt_tokens":120,"completion_tokens":100,"total_tokens":220}}`+"\n\ndata: [DONE]\n\n"))
	b.ReportAllocs()
	for b.Loop() {
		var s StreamUsage
		for _, c := range chunks {
			s.Write(c)
		}
		if _, ok := s.Usage(); !ok {
			b.Fatal("no usage")
		}
	}
}
