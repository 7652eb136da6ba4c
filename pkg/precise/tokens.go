package precise

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/logevery"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
)

// TokenProducerType is llm-d's name for the plugin; TokenizerType its
// older one.
const (
	TokenProducerType = "token-producer"
	TokenizerType     = "tokenizer"
)

// Backends of the token producer.
const (
	BackendEstimate = "estimate"
	BackendVLLM     = "vllm"
)

// TokenSource gives a request's prompt as the model server tokenizes it.
type TokenSource interface {
	scheduler.Plugin
	// Tokens returns the request's token IDs, computing them at most once
	// per request (state holds them); false when there are none.
	Tokens(ctx context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) ([]uint32, bool)
	// Exact reports whether the IDs are the model's own, which the
	// precise index needs; an estimate is not.
	Exact() bool
}

// TokenParams are the token-producer parameters, with llm-d's names.
type TokenParams struct {
	Backend   string     `json:"backend" doc:"estimate (no token IDs: the count is the prompt's bytes/4, which is what OpenEPP's other plugins use anyway) or vllm (ask a vLLM server); empty: vllm when modelName is set, else estimate, as llm-d" default:""`
	ModelName string     `json:"modelName" doc:"model written into each tokenizer request; empty: the request's own model (after any rewrite)" default:""`
	VLLM      VLLMParams `json:"vllm"`
}

// VLLMParams say which vLLM server tokenizes and how.
type VLLMParams struct {
	URL                string             `json:"url" doc:"base URL of the vLLM server that tokenizes" default:"http://localhost:8000"`
	HTTP               string             `json:"http,omitempty" doc:"older name of url" default:""`
	API                string             `json:"api" doc:"render: POST the request to /v1/chat/completions/render or /v1/completions/render, as llm-d (vllm launch render); tokenize: POST its prompt to /tokenize, which every vllm serve has (OpenEPP extension)" default:"render"`
	Timeout            scheduler.Duration `json:"timeout" doc:"give up on a tokenizer request after this long (the request is then routed without precise matches)" default:"5s"`
	MMTimeout          scheduler.Duration `json:"mmTimeout" doc:"accepted for llm-d configs; timeout applies to every request" default:"30s"`
	EndpointDiscovery  json.RawMessage    `json:"endpointDiscovery" doc:"set (to {} or llm-d's settings) to tokenize on the request's candidate model servers, the least busy (ties in turn), instead of url; their /tokenize is used unless api says otherwise" default:""`
	MessagesRenderMode string             `json:"messagesRenderMode" doc:"accepted for llm-d configs; Anthropic Messages requests always go to /v1/messages/render (llm-d's native mode)" default:"auto"`
	PrefillOnly        bool               `json:"prefillOnly" doc:"accepted for llm-d configs; no effect" default:"false"`
	InsecureSkipVerify bool               `json:"insecureSkipVerify" doc:"skip TLS verification of an https url" default:"false"`
	CACertPath         string             `json:"caCertPath" doc:"PEM CA bundle that verifies an https url" default:""`
}

func defaultTokenParams() TokenParams {
	return TokenParams{VLLM: VLLMParams{URL: "http://localhost:8000", API: "render", Timeout: scheduler.Duration(5 * time.Second), MMTimeout: scheduler.Duration(30 * time.Second)}}
}

func (p *TokenParams) validate() error {
	var errs []error
	if p.Backend == "" {
		p.Backend = BackendEstimate
		if p.ModelName != "" {
			p.Backend = BackendVLLM
		}
	}
	if p.Backend != BackendEstimate && p.Backend != BackendVLLM {
		errs = append(errs, fmt.Errorf("backend: want %q or %q, got %q", BackendEstimate, BackendVLLM, p.Backend))
	}
	if p.VLLM.HTTP != "" {
		p.VLLM.URL = p.VLLM.HTTP
	}
	if p.pool() && p.VLLM.API == "render" {
		p.VLLM.API = "tokenize" // a serving vLLM has /tokenize; render needs --enable-scale-out or a render server
	}
	if p.VLLM.API != "render" && p.VLLM.API != "tokenize" {
		errs = append(errs, fmt.Errorf("vllm.api: want render or tokenize, got %q", p.VLLM.API))
	}
	if p.Backend == BackendVLLM && !p.pool() {
		u, err := url.Parse(p.VLLM.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("vllm.url: want an http(s) URL, got %q", p.VLLM.URL))
		}
	}
	if p.VLLM.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("vllm.timeout: must be > 0, got %v", time.Duration(p.VLLM.Timeout)))
	}
	return errors.Join(errs...)
}

func (p *TokenParams) pool() bool {
	d := strings.TrimSpace(string(p.VLLM.EndpointDiscovery))
	return d != "" && d != "null"
}

// TokenProducer is llm-d's token-producer: it tokenizes each request's
// prompt with a vLLM server's tokenizer (chat template included), so the
// precise prefix-cache producer can hash the very token IDs the server's
// KV cache holds.
//
// With backend vllm it POSTs the request body (the model set to
// modelName, if given) to url's /v1/chat/completions/render or
// /v1/completions/render and reads token_ids, as llm-d does; with api
// tokenize it sends the prompt, messages and tools to /tokenize instead.
// With endpointDiscovery set it asks the request's candidate model servers
// themselves on /tokenize, the least busy as last scraped (ties in turn):
// no extra service to run, at the cost of a tokenizer call on a serving
// replica. Anthropic Messages requests go to /v1/messages/render in every
// mode (/tokenize takes none), as llm-d's native mode sends them. A
// completions prompt that is already token IDs, a vLLM generate
// request's token_ids and an SGLang request's input_ids are used as they
// are. Other APIs
// (Responses, embeddings) get no tokens, and precise matching passes them
// by.
//
// A failed or slow tokenizer call (vllm.timeout) leaves the request
// without tokens: it is routed on the other scorers, never failed. Calls
// and their outcomes are counted in openepp_token_producer_requests_total
// {plugin,outcome} and timed in openepp_token_producer_duration_seconds.
//
// With backend estimate (llm-d's default) there are no token IDs at all,
// and a precise producer naming it refuses to load.
type TokenProducer struct {
	name    scheduler.TypedName
	params  TokenParams
	client  *tokenizerClient
	log     logr.Logger
	next    atomic.Uint64 // where ties among candidates start
	metrics *tokenMetrics
	warned  logevery.Throttle
	// local, when set, tokenizes in process instead of asking a server.
	local func(*scheduler.Request) ([]uint32, bool)
}

var (
	_ scheduler.Producer = (*TokenProducer)(nil)
	_ TokenSource        = (*TokenProducer)(nil)
)

// TokenProducerRegistration describes the plugin type for the registry.
func TokenProducerRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    TokenProducerType,
		Factory: TokenProducerFactory,
		Params:  TokenParams{},
		Summary: "Tokenizes each request with a vLLM server's tokenizer (render or /tokenize), so precise-prefix-cache-producer can match the server's KV blocks.",
	}
}

// TokenizerRegistration is the same plugin under llm-d's older name.
func TokenizerRegistration() scheduler.Registration {
	r := TokenProducerRegistration()
	r.Type = TokenizerType
	r.Summary = "llm-d's older name of token-producer."
	return r
}

// TokenProducerFactory builds a TokenProducer from its parameters.
func TokenProducerFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	p := defaultTokenParams()
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	if h == nil {
		h = &scheduler.Handle{Log: logr.Discard()}
	}
	t := &TokenProducer{name: scheduler.TypedName{Type: TokenProducerType, Name: name}, params: p, log: h.Log.WithValues("plugin", name)}
	if p.Backend == BackendVLLM {
		c, err := newTokenizerClient(p)
		if err != nil {
			return nil, err
		}
		t.client = c
	}
	m, err := newTokenMetrics(h.Registerer)
	if err != nil {
		return nil, err
	}
	t.metrics = m
	return t, nil
}

// TypedName implements scheduler.Plugin.
func (t *TokenProducer) TypedName() scheduler.TypedName { return t.name }

// Exact implements TokenSource.
func (t *TokenProducer) Exact() bool { return t.params.Backend == BackendVLLM || t.local != nil }

// SetLocal makes the producer tokenize with fn instead of asking a server:
// the fleet simulation's servers tokenize in process. Set it before use.
func (t *TokenProducer) SetLocal(fn func(*scheduler.Request) ([]uint32, bool)) { t.local = fn }

// Produce implements scheduler.Producer: tokenize now, so the call's time
// is spent before the profiles run whichever plugin asks first.
func (t *TokenProducer) Produce(ctx context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) {
	t.Tokens(ctx, state, req, eps)
}

// tokenRecord is a request's tokens, per token source.
type tokenRecord struct {
	owner  *TokenProducer
	next   *tokenRecord
	tokens []uint32
	ok     bool
}

var tokensKey = scheduler.NewKey[*tokenRecord]("token-producer")

// Tokens implements TokenSource.
func (t *TokenProducer) Tokens(ctx context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) ([]uint32, bool) {
	head, _ := tokensKey.Get(state)
	for r := head; r != nil; r = r.next {
		if r.owner == t {
			return r.tokens, r.ok
		}
	}
	r := &tokenRecord{owner: t, next: head}
	tokensKey.Set(state, r)
	if t.local != nil && req != nil {
		r.tokens, r.ok = t.local(req)
		publishCount(state, r)
		return r.tokens, r.ok
	}
	if t.client == nil || req == nil || req.Body == nil {
		return nil, false
	}
	start := time.Now()
	tokens, outcome, err := t.tokenize(ctx, req, eps)
	t.metrics.observe(t.name.Name, outcome, time.Since(start))
	if err != nil {
		t.warn(req, outcome, err)
		return nil, false
	}
	r.tokens, r.ok = tokens, len(tokens) > 0
	publishCount(state, r)
	return r.tokens, r.ok
}

// publishCount makes the count readable outside this package
// (scheduler.PromptTokens); the first token source to succeed sets it.
func publishCount(state *scheduler.State, r *tokenRecord) {
	if _, set := scheduler.PromptTokens.Get(state); r.ok && !set {
		scheduler.PromptTokens.Set(state, len(r.tokens))
	}
}

// Outcomes of a tokenization, the outcome label of the metrics.
const (
	outcomeOK          = "ok"
	outcomeInline      = "inline_token_ids"
	outcomeUnsupported = "unsupported_api"
	outcomeNoEndpoint  = "no_endpoint"
	outcomeTimeout     = "timeout"
	outcomeError       = "error"
)

func (t *TokenProducer) tokenize(ctx context.Context, req *scheduler.Request, eps []*endpoint.Endpoint) ([]uint32, string, error) {
	b := req.Body
	if ids := b.TokenIDs(); ids != nil { // vLLM generate, SGLang input_ids
		return ids, outcomeInline, nil
	}
	if b.API != request.ChatCompletions && b.API != request.Completions && b.API != request.Messages {
		return nil, outcomeUnsupported, nil
	}
	if b.API == request.Completions {
		if ids, ok := inlineTokenIDs(b.Prompt); ok {
			return ids, outcomeInline, nil
		}
	}
	base := t.params.VLLM.URL
	if t.params.pool() {
		if len(eps) == 0 {
			return nil, outcomeNoEndpoint, errors.New("no candidate endpoint to tokenize on")
		}
		base = "http://" + t.leastBusy(eps).HostPort
	}
	model := t.params.ModelName
	if model == "" {
		model = req.Model
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(t.params.VLLM.Timeout))
	defer cancel()
	ids, err := t.client.tokenize(ctx, base, model, b)
	switch {
	case err == nil:
		return ids, outcomeOK, nil
	case errors.Is(err, context.DeadlineExceeded):
		return nil, outcomeTimeout, err
	default:
		return nil, outcomeError, err
	}
}

// leastBusy picks the candidate to tokenize on: the one with the fewest
// requests waiting and running as last scraped (a tokenizer call competes
// with serving there), ties taken in turn so equal servers share the calls.
func (t *TokenProducer) leastBusy(eps []*endpoint.Endpoint) *endpoint.Endpoint {
	start := int(t.next.Add(1) % uint64(len(eps)))
	best, load := eps[start], -1
	for i := range eps {
		e := eps[(start+i)%len(eps)]
		m := e.Metrics()
		if l := m.WaitingQueueSize + m.RunningRequestsSize; load < 0 || l < load {
			best, load = e, l
		}
	}
	return best
}

// inlineTokenIDs reads a completions prompt given as one list of token IDs.
func inlineTokenIDs(prompt []byte) ([]uint32, bool) {
	if len(prompt) < 2 || prompt[0] != '[' {
		return nil, false
	}
	var ids []uint32
	if json.Unmarshal(prompt, &ids) != nil || len(ids) == 0 {
		return nil, false
	}
	return ids, true
}

// warnEvery is how often a failure that repeats per request is logged.
const warnEvery = 30 * time.Second

// warn logs a failed tokenization at most every warnEvery.
func (t *TokenProducer) warn(req *scheduler.Request, outcome string, err error) {
	if !t.warned.Allow(time.Now(), warnEvery) {
		return
	}
	t.log.Info("tokenization failed; the request is routed without precise prefix matches (logged at most every 30s)",
		"requestID", req.ID, "outcome", outcome, "error", err.Error())
}

type tokenMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func (m *tokenMetrics) observe(plugin, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(plugin, outcome).Inc()
	if outcome == outcomeOK || outcome == outcomeTimeout || outcome == outcomeError {
		m.duration.WithLabelValues(plugin).Observe(d.Seconds())
	}
}
