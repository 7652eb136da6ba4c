package server

import (
	"bytes"
	"testing"
)

// FuzzModelRewriter checks that the response body a client receives does
// not depend on how the proxy chunked it: for any body and any split
// (empty chunks included), the chunks rewritten one by one, ended either by
// an end-of-stream chunk or by trailers (flush), add up to the whole body
// rewritten at once. A body that does not contain the sent model's JSON
// string passes through byte for byte, and no input chunk is modified.
func FuzzModelRewriter(f *testing.F) {
	const sent, requested = "target-model-v2", "meta-llama/Llama-3.1-8B-Instruct"
	for i, body := range []string{
		`{"id":"c1","object":"text_completion","model":"target-model-v2","choices":[{"text":"x"}],"other":{"model":"target-model-v2-x"}}`,
		"data: {\"id\":\"c1\",\"model\":\"target-model-v2\",\"choices\":[]}\n\ndata: {\"id\":\"c2\", \"model\": \"target-model-v2\"}\n\ndata: [DONE]\n\n",
		`{"id":1,"model":"target-model-v2`,
		`{"model":"someone-else"}`,
		`"model":"target-model-v2"model":"target-model-v2"`,
		`"model":"target-model-v2"model": "target-model-v2"`,
		`"model": "model":"target-model-v2"`,
	} {
		f.Add(sent, requested, []byte(body), []byte{byte(i), 9, 0, 5})
	}
	f.Add("m", "n", []byte(`"model":"m""model": "m"`), []byte{8, 1})
	f.Add("a\"b", "<c>", []byte(`{"model":"a\"b"}`), []byte{11})
	f.Fuzz(func(t *testing.T, sent, requested string, body, cuts []byte) {
		want, _ := newModelRewriter(sent, requested).rewrite(bytes.Clone(body), true)
		if !bytes.Contains(body, jsonString(sent)) && !bytes.Equal(want, body) {
			t.Fatalf("body without %q changed:\n in: %q\nout: %q", sent, body, want)
		}
		chunks := splitAt(body, cuts)
		for _, trailers := range []bool{false, true} {
			m := newModelRewriter(sent, requested)
			var got []byte
			for i, c := range chunks {
				in := bytes.Clone(c)
				out, ok := m.rewrite(c, !trailers && i == len(chunks)-1)
				if !bytes.Equal(c, in) {
					t.Fatalf("rewrite modified its input chunk %q to %q", in, c)
				}
				if !ok && len(out) > 0 {
					t.Fatalf("rewrite returned %q with ok false", out)
				}
				got = append(got, out...)
			}
			if trailers {
				got = append(got, m.flush()...)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("sent %q requested %q, body %q in chunks %q (trailers %v):\n got %q\nwant %q",
					sent, requested, body, chunks, trailers, got, want)
			}
		}
	})
}

// TestModelRewriterOverlapIndependentOfChunks is the case FuzzModelRewriter
// found: two patterns sharing a quote. Rewriting one pattern after the
// other over the whole body matched both, while a chunk boundary after the
// first match kept the second, so the client's bytes depended on the
// proxy's chunking. One left-to-right scan rewrites the first only, either
// way.
func TestModelRewriterOverlapIndependentOfChunks(t *testing.T) {
	t.Parallel()
	body := `"model":"sent"model": "sent"`
	want := `"model":"asked"model": "sent"`
	for cut := range len(body) + 1 {
		m := newModelRewriter("sent", "asked")
		first, _ := m.rewrite([]byte(body[:cut]), false)
		second, _ := m.rewrite([]byte(body[cut:]), true)
		if got := string(first) + string(second); got != want {
			t.Errorf("cut at %d: got %q, want %q", cut, got, want)
		}
	}
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
