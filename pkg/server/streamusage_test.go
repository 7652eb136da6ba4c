package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/openepp/openepp/pkg/server"
)

// TestStreamUsageAskedForTheClient: with IncludeStreamUsage a streamed
// completion whose client did not ask for usage is sent to a real simulator
// asking for it; the plugins see the simulator's token counts and the
// client gets the stream without the usage event, all the rest byte for
// byte. A client that asked gets the stream untouched.
func TestStreamUsageAskedForTheClient(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	_, specs := startSims(t, 2)
	h := start(t, setup{endpoints: specs, server: server.Options{IncludeStreamUsage: true}})
	httpc := &http.Client{Transport: &http.Transport{}, Timeout: testTimeout}
	t.Cleanup(httpc.CloseIdleConnections)
	for _, asked := range []bool{false, true} {
		ctx := testCtx(t)
		id := uuid.NewString()
		body := map[string]any{"model": testModel, "prompt": "Count to five.", "max_tokens": 5, "stream": true}
		if asked {
			body["stream_options"] = map[string]any{"include_usage": true}
		}
		req := post("/v1/completions", nil, "x-request-id", id)
		req.Body = mustJSON(body)
		s := h.open(t)
		d, err := s.SendRequest(ctx, req)
		if err != nil || d.Immediate != nil {
			t.Fatalf("request phase: %v %+v", err, d)
		}
		var upstreamBody struct {
			StreamOptions struct {
				IncludeUsage bool `json:"include_usage"`
			} `json:"stream_options"`
		}
		if err := json.Unmarshal(d.Body, &upstreamBody); err != nil || !upstreamBody.StreamOptions.IncludeUsage {
			t.Fatalf("asked %v: the server was sent %s (%v), want include_usage", asked, d.Body, err)
		}
		upstream, err := forward(ctx, httpc, d)
		if err != nil {
			t.Fatal(err)
		}
		sent, err := playUpstream(ctx, s, upstream, d.Endpoints[0])
		upstream.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		got, err := collectBody(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		want := sent
		if !asked {
			var kept [][]byte
			for _, ev := range bytes.SplitAfter(sent, []byte("\n\n")) {
				if !bytes.Contains(ev, []byte(`"choices":[]`)) {
					kept = append(kept, ev)
				}
			}
			want = bytes.Join(kept, nil)
			if len(want) == len(sent) || !strings.HasSuffix(string(got), "data: [DONE]\n\n") {
				t.Errorf("the simulator's stream had no usage event to remove, or the client's lost its end: %q", got)
			}
		}
		if !bytes.Equal(got, want) {
			t.Errorf("asked %v: client got %q, want %q", asked, got, want)
		}
		resp := h.rec.completed(t, id)
		if diff := cmp.Diff(usageOf(t, sent), resp.Usage); diff != "" || !resp.UsageKnown {
			t.Errorf("asked %v: usage seen by plugins (-simulator +plugins):\n%s", asked, diff)
		}
	}
}
