package precise

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
)

// TestTokensMatchTheServer checks every way of asking: the token IDs equal
// what the simulated vLLM's /tokenize says for the same chat, which its
// engine caches (pkg/sim's tests prove that part).
func TestTokensMatchTheServer(t *testing.T) {
	t.Parallel()
	inst, ep := startSim(t, "")
	req := chatRequest(t, inst.Model(), "You are a terse assistant.", "What is a KV cache?")
	want := tokenizeDirect(t, inst.URL(), req.Body.Raw)
	for name, params := range map[string]string{
		"render":                                 `{"backend":"vllm","vllm":{"url":"` + inst.URL() + `"}}`,
		"modelName selects vllm, old http field": `{"modelName":"` + inst.Model() + `","vllm":{"http":"` + inst.URL() + `"}}`,
		"tokenize":                               `{"backend":"vllm","vllm":{"url":"` + inst.URL() + `","api":"tokenize"}}`,
		"pool":                                   `{"backend":"vllm","vllm":{"endpointDiscovery":{}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			tp := newTokens(t, params, reg)
			st := state()
			got, ok := tp.Tokens(context.Background(), st, req, []*endpoint.Endpoint{ep})
			if !ok || !slices.Equal(got, want) {
				t.Fatalf("tokens = %v (ok %v), want the server's %v", got, ok, want)
			}
			// Asked again for the same request: the answer is kept.
			tp.Produce(context.Background(), st, req, []*endpoint.Endpoint{ep})
			if n := testutil.ToFloat64(tp.metrics.requests.WithLabelValues("token-producer", outcomeOK)); n != 1 {
				t.Errorf("%v tokenizer calls for one request, want 1", n)
			}
		})
	}
}

// tokenizeDirect asks the server's /tokenize for a chat body's IDs.
func tokenizeDirect(t *testing.T, base string, chatBody []byte) []uint32 {
	t.Helper()
	resp, err := http.Post(base+"/tokenize", "application/json", strings.NewReader(string(chatBody)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Tokens []uint32 }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out.Tokens) == 0 {
		t.Fatalf("tokenize: %v %v", err, out)
	}
	return out.Tokens
}

// TestTokenizerFailuresRouteWithoutTokens: a broken, slow or absent
// tokenizer leaves the request without tokens, counted by outcome, never
// an error for the request.
func TestTokenizerFailuresRouteWithoutTokens(t *testing.T) {
	t.Parallel()
	servers := map[string]http.HandlerFunc{
		"500":     func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) },
		"garbage": func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("{not json")) },
		"no ids":  func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"count":3}`)) },
		"hangs": func(w http.ResponseWriter, r *http.Request) {
			select { // past the client's timeout; bounded so the server can close
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
		},
	}
	outcomes := map[string]string{"500": outcomeError, "garbage": outcomeError, "no ids": outcomeError, "hangs": outcomeTimeout}
	for name, h := range servers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			reg := prometheus.NewRegistry()
			tp := newTokens(t, `{"backend":"vllm","vllm":{"url":"`+srv.URL+`","timeout":"200ms"}}`, reg)
			start := time.Now()
			if ids, ok := tp.Tokens(context.Background(), state(), chatRequest(t, "m", "s", "u"), nil); ok || ids != nil {
				t.Errorf("tokens %v from a failing tokenizer", ids)
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("took %v, want about the 200ms timeout", time.Since(start))
			}
			if n := testutil.ToFloat64(tp.metrics.requests.WithLabelValues("token-producer", outcomes[name])); n != 1 {
				t.Errorf("outcome %s counted %v times", outcomes[name], n)
			}
		})
	}
	t.Run("dead", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close()
		tp := newTokens(t, `{"backend":"vllm","vllm":{"url":"`+srv.URL+`"}}`, nil)
		if _, ok := tp.Tokens(context.Background(), state(), chatRequest(t, "m", "s", "u"), nil); ok {
			t.Error("tokens from a dead tokenizer")
		}
	})
	t.Run("pool without endpoints", func(t *testing.T) {
		t.Parallel()
		tp := newTokens(t, `{"backend":"vllm","vllm":{"endpointDiscovery":{}}}`, prometheus.NewRegistry())
		if _, ok := tp.Tokens(context.Background(), state(), chatRequest(t, "m", "s", "u"), nil); ok {
			t.Error("tokens with no endpoint to ask")
		}
		if n := testutil.ToFloat64(tp.metrics.requests.WithLabelValues("token-producer", outcomeNoEndpoint)); n != 1 {
			t.Errorf("no_endpoint counted %v times", n)
		}
	})
}

func TestTokensWithoutACall(t *testing.T) {
	t.Parallel()
	tp := newTokens(t, `{"backend":"vllm","vllm":{"url":"http://127.0.0.1:1"}}`, prometheus.NewRegistry())
	// A completions prompt of token IDs is its own answer.
	b, err := request.Parse(request.Completions, []byte(`{"model":"m","prompt":[5,6,7]}`))
	if err != nil {
		t.Fatal(err)
	}
	ids, ok := tp.Tokens(context.Background(), state(), &scheduler.Request{Model: "m", Body: b}, nil)
	if !ok || !slices.Equal(ids, []uint32{5, 6, 7}) {
		t.Errorf("inline IDs: %v %v", ids, ok)
	}
	// So is a vLLM generate request's token_ids.
	b, err = request.Parse(request.Generate, []byte(`{"token_ids":[8, 9],"sampling_params":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	ids, ok = tp.Tokens(context.Background(), state(), &scheduler.Request{Body: b}, nil)
	if !ok || !slices.Equal(ids, []uint32{8, 9}) {
		t.Errorf("generate IDs: %v %v", ids, ok)
	}
	// And an SGLang request's input_ids.
	b, err = request.Parse(request.SGLangGenerate, []byte(`{"input_ids":[4]}`))
	if err != nil {
		t.Fatal(err)
	}
	ids, ok = tp.Tokens(context.Background(), state(), &scheduler.Request{Body: b}, nil)
	if !ok || !slices.Equal(ids, []uint32{4}) {
		t.Errorf("SGLang IDs: %v %v", ids, ok)
	}
	// Other APIs are not tokenized.
	b, err = request.Parse(request.Responses, []byte(`{"model":"m","input":"hi"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tp.Tokens(context.Background(), state(), &scheduler.Request{Model: "m", Body: b}, nil); ok {
		t.Error("a Responses request was tokenized")
	}
	if n := testutil.ToFloat64(tp.metrics.requests.WithLabelValues("token-producer", outcomeUnsupported)); n != 1 {
		t.Errorf("unsupported_api counted %v times", n)
	}
	// The estimate backend has no IDs.
	est := newTokens(t, `{}`, nil)
	if est.Exact() {
		t.Error("the default backend claims exact tokens")
	}
	if _, ok := est.Tokens(context.Background(), state(), chatRequest(t, "m", "s", "u"), nil); ok {
		t.Error("estimate backend gave token IDs")
	}
}

// TestTokensPublishTheCount: the count of a tokenized request is readable
// outside this package (accelerator-capability-aware sizes requests by
// it), the first producer's; a request without tokens publishes none.
func TestTokensPublishTheCount(t *testing.T) {
	t.Parallel()
	b, err := request.Parse(request.Completions, []byte(`{"model":"m","prompt":[5,6,7]}`))
	if err != nil {
		t.Fatal(err)
	}
	req := &scheduler.Request{Model: "m", Body: b}
	first := newTokens(t, `{"backend":"vllm","vllm":{"url":"http://127.0.0.1:1"}}`, nil)
	second := newTokens(t, `{"backend":"vllm","vllm":{"url":"http://127.0.0.1:1"}}`, nil)
	second.SetLocal(func(*scheduler.Request) ([]uint32, bool) { return []uint32{1}, true })
	st := state()
	first.Produce(context.Background(), st, req, nil)
	second.Produce(context.Background(), st, req, nil)
	if n, ok := scheduler.PromptTokens.Get(st); !ok || n != 3 {
		t.Errorf("published count %d (set %v), want the first producer's 3", n, ok)
	}
	st = state()
	newTokens(t, `{}`, nil).Produce(context.Background(), st, chatRequest(t, "m", "s", "u"), nil)
	if n, ok := scheduler.PromptTokens.Get(st); ok {
		t.Errorf("estimate backend published a count of %d", n)
	}
}

func TestTokenParamsErrors(t *testing.T) {
	t.Parallel()
	for params, want := range map[string]string{
		`{"backend":"hf"}`: `backend: want "estimate" or "vllm", got "hf"`,
		`{"backend":"vllm","vllm":{"url":"localhost"}}`:               `vllm.url: want an http(s) URL`,
		`{"backend":"vllm","vllm":{"api":"grpc"}}`:                    `vllm.api: want render or tokenize`,
		`{"backend":"vllm","vllm":{"timeout":"0s"}}`:                  `vllm.timeout: must be > 0`,
		`{"backend":"vllm","vllm":{"caCertPath":"/nonexistent.pem"}}`: `vllm.caCertPath`,
		`{"backend":"vllm","vllm":{"bogus":1}}`:                       `unknown field "bogus"`,
	} {
		_, err := TokenProducerFactory("t", json.RawMessage(params), nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", params, err, want)
		}
	}
}

// TestPoolTokenizesOnTheLeastBusy: with endpointDiscovery the tokenizer
// call goes to the candidate with the fewest requests as last scraped.
func TestPoolTokenizesOnTheLeastBusy(t *testing.T) {
	t.Parallel()
	var busyCalls, idleCalls atomic.Int64
	serve := func(n *atomic.Int64) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			n.Add(1)
			_, _ = w.Write([]byte(`{"count":2,"tokens":[1,2]}`))
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	endpointOf := func(srv *httptest.Server, waiting int) *endpoint.Endpoint {
		u, _ := url.Parse(srv.URL)
		port, _ := strconv.Atoi(u.Port())
		e := endpoint.New(endpoint.Spec{Name: u.Host, Address: u.Hostname(), Port: port})
		e.SetMetrics(&endpoint.Metrics{WaitingQueueSize: waiting})
		return e
	}
	busy, idle := endpointOf(serve(&busyCalls), 9), endpointOf(serve(&idleCalls), 1)
	tp := newTokens(t, `{"backend":"vllm","vllm":{"endpointDiscovery":{}}}`, nil)
	for range 4 {
		if _, ok := tp.Tokens(context.Background(), state(), chatRequest(t, "m", "s", "u"), []*endpoint.Endpoint{busy, idle}); !ok {
			t.Fatal("no tokens")
		}
	}
	if busyCalls.Load() != 0 || idleCalls.Load() != 4 {
		t.Errorf("calls: busy %d, idle %d; want 0 and 4", busyCalls.Load(), idleCalls.Load())
	}
}

// TestAnthropicMessagesAreRendered: a Messages request is tokenized on
// /v1/messages/render, in pool mode too, with the IDs the server caches.
func TestAnthropicMessagesAreRendered(t *testing.T) {
	t.Parallel()
	inst, ep := startSim(t, "")
	raw := []byte(`{"model":"` + inst.Model() + `","max_tokens":4,"system":"Be brief.","messages":[{"role":"user","content":"Which server holds my prefix?"}]}`)
	b, err := request.Parse(request.Messages, raw)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(inst.URL()+"/v1/messages/count_tokens", "application/json", strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	var count struct {
		InputTokens int `json:"input_tokens"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&count)
	resp.Body.Close()
	for _, params := range []string{`{"backend":"vllm","vllm":{"endpointDiscovery":{}}}`, `{"backend":"vllm","vllm":{"url":"` + inst.URL() + `"}}`} {
		tp := newTokens(t, params, nil)
		ids, ok := tp.Tokens(context.Background(), state(), &scheduler.Request{Model: inst.Model(), Body: b}, []*endpoint.Endpoint{ep})
		if !ok || len(ids) != count.InputTokens {
			t.Errorf("%s: %d tokens (ok %v), the server counts %d", params, len(ids), ok, count.InputTokens)
		}
	}
}
