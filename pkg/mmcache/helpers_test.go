package mmcache

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
)

// parse parses body for api as the EPP does.
func parse(t testing.TB, api request.API, body string) *request.Body {
	t.Helper()
	b, err := request.Parse(api, []byte(body))
	if err != nil {
		t.Fatalf("parse %s: %v", body, err)
	}
	return b
}

// items returns the items of a body of api.
func items(t testing.TB, api request.API, body string) []uint64 {
	t.Helper()
	return AppendItems(nil, parse(t, api, body))
}

// imagePart is a chat image_url content part.
func imagePart(url string) map[string]any {
	return map[string]any{"type": "image_url", "image_url": map[string]any{"url": url}}
}

// chatWith is a chat completions request whose one user message holds
// text and parts.
func chatWith(t testing.TB, text string, parts ...map[string]any) *scheduler.Request {
	t.Helper()
	content := []map[string]any{{"type": "text", "text": text}}
	content = append(content, parts...)
	raw, err := json.Marshal(map[string]any{"model": "m", "messages": []map[string]any{{"role": "user", "content": content}}})
	if err != nil {
		t.Fatal(err)
	}
	return &scheduler.Request{ID: "r", Model: "m", Body: parse(t, request.ChatCompletions, string(raw))}
}

// eps returns n endpoints 10.0.0.i:8000 named s<i>.
func eps(n int) []*endpoint.Endpoint {
	out := make([]*endpoint.Endpoint, n)
	for i := range out {
		out[i] = endpoint.New(endpoint.Spec{Name: fmt.Sprintf("s%d", i), Address: fmt.Sprintf("10.0.0.%d", i+1), Port: 8000})
	}
	return out
}

// poolOf is a handle whose pool is pool.
func poolOf(pool []*endpoint.Endpoint) *scheduler.Handle {
	return &scheduler.Handle{Endpoints: func() []*endpoint.Endpoint { return pool }}
}

func newProducer(t testing.TB, params string, h *scheduler.Handle) *Producer {
	t.Helper()
	pl, err := ProducerFactory("mm", json.RawMessage(params), h)
	if err != nil {
		t.Fatalf("producer %s: %v", params, err)
	}
	return pl.(*Producer)
}

// resultTo is a scheduling result whose primary target is target and,
// when prefill is not nil, whose prefill profile picked prefill.
func resultTo(target, prefill *endpoint.Endpoint) *scheduler.Result {
	r := &scheduler.Result{Primary: "decode", Profiles: map[string]*scheduler.ProfileResult{
		"decode": {Targets: []*endpoint.Endpoint{target}},
	}}
	if prefill != nil {
		r.Profiles["prefill"] = &scheduler.ProfileResult{Targets: []*endpoint.Endpoint{prefill}}
	}
	return r
}
