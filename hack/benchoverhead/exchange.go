package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/openepp/openepp/pkg/extproc"
)

// bodiesPerSize is how many distinct prompts of each size the generator
// cycles through, so no layer can cache one body.
const bodiesPerSize = 32

// Response phase choices of the generator.
const (
	responseFull = "full" // response headers + one body chunk, as Envoy plays every exchange
	responseNone = "none" // end the stream after the routing decision
)

// completionReply is the upstream response the generator replays: a
// non-streaming completion with usage, one body chunk.
const completionReply = `{"id":"cmpl-bench","object":"text_completion","created":1,"model":"sim-model",` +
	`"choices":[{"index":0,"text":" the benchmark answer is sixteen tokens long, more or less, as asked","finish_reason":"length"}],` +
	`"usage":{"prompt_tokens":256,"completion_tokens":16,"total_tokens":272}}`

// words make up the prompts; about four characters per token.
var words = strings.Fields("the of and to in is that for it as was with be by on not he this are or his from at " +
	"which but have an they you were her she there been one all we their has would when if so no will more can " +
	"model server cache prefix token request latency route picker endpoint gateway envoy stream batch queue")

// exchanger plays one Envoy exchange per call against one ext_proc server.
type exchanger struct {
	clients  []*extproc.Client
	response string
	chunk    int
	prefix   string // x-request-id prefix, unique per process
	ids      atomic.Uint64
	bodies   map[int][][]byte
	reply    extproc.Response
}

// bodiesFor returns the request bodies for prompts of size bytes, building
// them on first use (not concurrency-safe: call before a run).
func (e *exchanger) bodiesFor(size int) [][]byte {
	if b, ok := e.bodies[size]; ok {
		return b
	}
	rng := rand.New(rand.NewPCG(uint64(size), 7)) //nolint:gosec // prompt text, not security
	out := make([][]byte, bodiesPerSize)
	for i := range out {
		var sb strings.Builder
		for sb.Len() < size {
			sb.WriteString(words[rng.IntN(len(words))])
			sb.WriteByte(' ')
		}
		prompt := sb.String()[:size]
		out[i] = fmt.Appendf(nil, `{"model":"sim-model","prompt":%q,"max_tokens":16,"stream":false}`, prompt)
	}
	e.bodies[size] = out
	return out
}

// exchange plays request seq with a prompt of size bytes: the request
// phase, the routing decision (the returned mark), then the response phase.
func (e *exchanger) exchange(ctx context.Context, seq, size int) (time.Time, error) {
	bodies := e.bodies[size]
	c := e.clients[seq%len(e.clients)]
	req := extproc.Request{
		Method: "POST", Path: "/v1/completions", Authority: "gateway.bench",
		Headers: http.Header{
			"Content-Type": {"application/json"},
			"X-Request-Id": {e.prefix + strconv.FormatUint(e.ids.Add(1), 10)},
		},
		Body: bodies[seq%len(bodies)], ChunkSize: e.chunk,
	}
	s, err := c.Open(ctx)
	if err != nil {
		return time.Time{}, err
	}
	d, err := s.SendRequest(ctx, req)
	mark := time.Now()
	if err == nil {
		err = checkDecision(d)
	}
	if err != nil {
		s.Abort()
		return mark, err
	}
	if e.response == responseFull {
		resp := e.reply
		resp.FilterMetadata = map[string]map[string]any{extproc.LBNamespace: {extproc.ServedKey: d.Endpoints[0]}}
		if _, err := s.PlayResponse(ctx, resp); err != nil {
			s.Abort()
			return mark, fmt.Errorf("response phase: %w", err)
		}
	}
	return mark, s.Close()
}

// checkDecision requires what Envoy needs to route: one destination.
func checkDecision(d *extproc.Decision) error {
	if d.Immediate != nil {
		return fmt.Errorf("immediate response %d: %s", d.Immediate.Status, strings.TrimSpace(string(d.Immediate.Body)))
	}
	if len(d.Endpoints) == 0 {
		return errors.New("no destination endpoint in the decision")
	}
	return nil
}

func newReply() extproc.Response {
	return extproc.Response{
		Status:  200,
		Headers: http.Header{"Content-Type": {"application/json"}},
		Body:    []byte(completionReply),
	}
}
