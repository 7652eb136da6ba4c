package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/openepp/openepp/pkg/apierror"
	"github.com/openepp/openepp/pkg/sim/engine"
)

// routes builds the instance's HTTP API.
func (i *Instance) routes(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/completions", i.handleGenerate(false))
	mux.HandleFunc("POST /v1/chat/completions", i.handleGenerate(true))
	mux.HandleFunc("POST /v1/messages", i.handleMessages)
	mux.HandleFunc("POST /v1/messages/count_tokens", i.handleCountTokens)
	mux.HandleFunc("POST "+generateTokensPath, i.handleGenerateTokens)
	mux.HandleFunc("POST "+sglangGeneratePath, i.handleSGLangGenerate) // served whatever MetricsEngine
	mux.HandleFunc("POST /tokenize", i.handleTokenize)
	mux.HandleFunc("POST /v1/chat/completions/render", i.handleRender(true))
	mux.HandleFunc("POST /v1/completions/render", i.handleRender(false))
	mux.HandleFunc("POST /v1/messages/render", i.handleMessagesRender)
	mux.HandleFunc("GET /v1/models", i.handleModels)
	mux.HandleFunc("POST /v1/load_lora_adapter", i.handleLoadLoRA)
	mux.HandleFunc("POST /v1/unload_lora_adapter", i.handleUnloadLoRA)
	mux.HandleFunc("POST "+KVLookupPath, i.handleKVLookup)
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	page := promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError})
	mux.Handle("GET "+i.flavor.path, i.metricsHandler(page))
	mux.HandleFunc("GET /admin/faults", i.handleFaults)
	mux.HandleFunc("POST /admin/faults", i.handleFaults)
	return mux
}

// EndpointHeader names the response header carrying the instance's
// host:port, so tests behind a router can see which replica answered.
const EndpointHeader = "x-openepp-sim-endpoint"

// handleGenerate serves /v1/completions (chat=false) and
// /v1/chat/completions.
func (i *Instance) handleGenerate(chat bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		parse := func() (genRequest, *apiError) { return i.parseGenerate(w, r, chat) }
		g, c, ok := i.startCall(w, r, parse, writeAPIError)
		if !ok {
			return
		}
		defer i.drv.cancel(c)
		rs := newResponseState(i, g, c)
		if g.stream {
			i.stream(w, r, rs)
			return
		}
		i.respond(w, r, rs)
	}
}

// startCall runs what every generating API does before answering: the
// completions fault, parsing, and submitting to the engine. When it returns
// false it has answered with an error through fail; otherwise the caller
// owns the call and must cancel it.
func (i *Instance) startCall(w http.ResponseWriter, r *http.Request, parse func() (genRequest, *apiError),
	fail func(http.ResponseWriter, *apiError)) (genRequest, *call, bool) {
	i.setAnswerHeaders(w, r)
	if status := i.Faults().CompletionsStatus; status != 0 {
		fail(w, &apiError{status: status, typ: "InternalServerError", msg: "simulated failure"})
		return genRequest{}, nil, false
	}
	g, aerr := parse()
	if aerr != nil {
		fail(w, aerr)
		return genRequest{}, nil, false
	}
	c, err := i.drv.submit(g.prompts, i.p2pPulls(r, g), engine.Request{
		MaxTokens: g.maxTokens, LoRA: g.lora, CacheSalt: g.cacheSalt, RemotePrefill: g.kv.remotePrefill,
		Priority: g.priority,
	})
	if err != nil {
		fail(w, engineError(err))
		return genRequest{}, nil, false
	}
	i.countKVTransfer(g.kv)
	return g, c, true
}

// startCallWith is startCall for an API whose parse also returns what its
// answer needs beyond genRequest (X).
func startCallWith[X any](i *Instance, w http.ResponseWriter, r *http.Request,
	parse func(http.ResponseWriter, *http.Request) (genRequest, X, *apiError),
	fail func(http.ResponseWriter, *apiError)) (genRequest, X, *call, bool) {
	var x X
	g, c, ok := i.startCall(w, r, func() (genRequest, *apiError) {
		g, extras, aerr := parse(w, r)
		x = extras
		return g, aerr
	}, fail)
	return g, x, c, ok
}

// setAnswerHeaders names the answering instance and echoes the request ID.
func (i *Instance) setAnswerHeaders(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(EndpointHeader, i.addr)
	if id := r.Header.Get("x-request-id"); id != "" {
		w.Header().Set("x-request-id", id)
	}
}

// wait blocks until the call progresses; false means stop serving it (the
// client left or the server is shutting down).
func (i *Instance) wait(r *http.Request, c *call) bool {
	select {
	case <-c.notify:
		return true
	case <-r.Context().Done():
	case <-i.closing:
	}
	return false
}

// respond answers a non-streaming request once every choice is complete.
func (i *Instance) respond(w http.ResponseWriter, r *http.Request, rs *responseState) {
	if i.awaitDone(w, r, rs, writeAPIError) {
		writeJSON(w, http.StatusOK, rs.final())
	}
}

// awaitDone waits until every choice is complete. False means there is
// nothing more to answer: the die fault closed the connection, or the
// client left or the server is shutting down (reported through fail).
func (i *Instance) awaitDone(w http.ResponseWriter, r *http.Request, rs *responseState, fail func(http.ResponseWriter, *apiError)) bool {
	for {
		done := i.drv.snapshot(rs.call, rs.seen)
		if die := i.Faults().DieAfterTokens; die > 0 && rs.produced() >= die {
			abortConnection(w)
			return false
		}
		if done {
			return true
		}
		if !i.wait(r, rs.call) {
			fail(w, &apiError{status: http.StatusServiceUnavailable, typ: "ServiceUnavailableError", msg: "server shutting down"})
			return false
		}
	}
}

// stream answers with server-sent events: one chunk per token, then the
// usage chunk if asked for, then [DONE].
func (i *Instance) stream(w http.ResponseWriter, r *http.Request, rs *responseState) {
	rc := startSSE(w)
	if rs.g.chat && !writeEvent(w, rs.roleChunk()) {
		return
	}
	emit := func(j int) bool { return writeEvent(w, rs.tokenChunk(j)) }
	if !i.pumpTokens(w, r, rc, rs, nil, emit) {
		return
	}
	if rs.g.includeUsage && !writeEvent(w, rs.usageChunk()) {
		return
	}
	_, _ = fmt.Fprint(w, "data: [DONE]\n\n")
	_ = rc.Flush()
}

// startSSE answers 200 with a server-sent-event stream.
func startSSE(w http.ResponseWriter) *http.ResponseController {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	return http.NewResponseController(w)
}

// pumpTokens streams a call's tokens through emit as they are generated,
// flushing after each snapshot, until the call is done (true) or the
// stream must stop (false). before, when set, runs after each snapshot
// ahead of its tokens, told whether the call is done.
func (i *Instance) pumpTokens(w http.ResponseWriter, r *http.Request, rc *http.ResponseController, rs *responseState,
	before func(done bool) bool, emit func(j int) bool) bool {
	written := 0
	for {
		done := i.drv.snapshot(rs.call, rs.seen)
		if before != nil && !before(done) {
			return false
		}
		if !i.writeTokens(w, rs, &written, emit) || rc.Flush() != nil {
			return false
		}
		if done {
			return true
		}
		if !i.wait(r, rs.call) {
			return false
		}
	}
}

// writeTokens streams the tokens of the latest snapshot not yet sent, each
// through emit (which sends token rs.sent[j] of choice j), counting them in
// written; false means stop (the client is gone, or the die-mid-stream
// fault fired and the connection is closed).
func (i *Instance) writeTokens(w http.ResponseWriter, rs *responseState, written *int, emit func(j int) bool) bool {
	for j := range rs.seen {
		for rs.sent[j] < rs.seen[j].tokens {
			rs.sent[j]++
			if !emit(j) {
				return false
			}
			*written++
			if die := i.Faults().DieAfterTokens; die > 0 && *written >= die {
				_ = http.NewResponseController(w).Flush()
				abortConnection(w)
				return false
			}
		}
	}
	return true
}

// abortConnection closes the client connection without finishing the
// response, as a crashing server would. Hijacking works for the HTTP/1.1
// connections this server speaks; otherwise net/http's own abort sentinel
// does the same.
func abortConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

func writeEvent(w http.ResponseWriter, v any) bool {
	b, err := json.Marshal(v)
	if err != nil {
		return false
	}
	_, err = fmt.Fprintf(w, "data: %s\n\n", b)
	return err == nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, fmt.Sprintf("encode response: %v", err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// wireError is vLLM's error body.
type wireError = apierror.OpenAIBody

func writeAPIError(w http.ResponseWriter, e *apiError) {
	var we wireError
	we.Error.Message, we.Error.Type, we.Error.Code = e.msg, e.typ, e.status
	if e.param != "" {
		we.Error.Param = &e.param
	}
	writeJSON(w, e.status, we)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeAPIError(w, &apiError{status: status, typ: http.StatusText(status), msg: msg})
}

type wireModel struct {
	ID          string  `json:"id"`
	Object      string  `json:"object"`
	Created     int64   `json:"created"`
	OwnedBy     string  `json:"owned_by"`
	Root        string  `json:"root"`
	Parent      *string `json:"parent"`
	MaxModelLen int     `json:"max_model_len,omitempty"`
}

type wireModelList struct {
	Object string      `json:"object"`
	Data   []wireModel `json:"data"`
}

func (i *Instance) handleModels(w http.ResponseWriter, _ *http.Request) {
	served, loras := i.models.list()
	created := time.Now().Unix()
	list := wireModelList{Object: "list", Data: []wireModel{}}
	for _, n := range served {
		list.Data = append(list.Data, wireModel{ID: n, Object: "model", Created: created, OwnedBy: "vllm",
			Root: i.cfg.Model, MaxModelLen: i.cfg.engine.MaxModelLen})
	}
	base := i.cfg.Model
	for _, n := range loras {
		list.Data = append(list.Data, wireModel{ID: n, Object: "model", Created: created, OwnedBy: "vllm",
			Root: n, Parent: &base})
	}
	writeJSON(w, http.StatusOK, list)
}

type wireLoRA struct {
	Name string `json:"lora_name"`
	Path string `json:"lora_path"`
}

// handleLoadLoRA serves vLLM's dynamic adapter loading endpoint.
func (i *Instance) handleLoadLoRA(w http.ResponseWriter, r *http.Request) {
	var req wireLoRA
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	switch {
	case req.Name == "":
		writeError(w, http.StatusBadRequest, "lora_name is required")
	case i.cfg.engine.MaxLoRAs == 0:
		writeError(w, http.StatusBadRequest, "LoRA is not enabled (max-loras is 0)")
	default:
		if err := i.models.load(req.Name); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		i.drv.loadLoRA(req.Name) // into the host cache when it has room
		w.WriteHeader(http.StatusOK)
		_, _ = fmt.Fprintf(w, "Success: LoRA adapter '%s' added successfully.", req.Name)
	}
}

// handleUnloadLoRA serves vLLM's dynamic adapter unloading endpoint.
func (i *Instance) handleUnloadLoRA(w http.ResponseWriter, r *http.Request) {
	var req wireLoRA
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !i.models.unload(req.Name) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("the lora adapter %q cannot be found", req.Name))
		return
	}
	i.drv.unloadLoRA(req.Name)
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprintf(w, "Success: LoRA adapter '%s' removed successfully.", req.Name)
}
