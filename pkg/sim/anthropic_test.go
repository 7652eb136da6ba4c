package sim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/sim/tokenize"
)

// messageAnswer is an Anthropic message, as answered or in message_start.
type messageAnswer struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Role    string `json:"role"`
	Content []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
	Model        string  `json:"model"`
	StopReason   *string `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"`
	Usage        struct {
		Input         int  `json:"input_tokens"`
		Output        int  `json:"output_tokens"`
		CacheRead     *int `json:"cache_read_input_tokens"`
		CacheCreation *int `json:"cache_creation_input_tokens"`
	} `json:"usage"`
	KV *struct {
		DoRemotePrefill bool   `json:"do_remote_prefill"`
		RemoteEngineID  string `json:"remote_engine_id"`
		RemotePort      int    `json:"remote_port"`
	} `json:"kv_transfer_params"`
}

// prompt is the whole prompt the usage accounts for.
func (m messageAnswer) prompt() int { return m.Usage.Input + *m.Usage.CacheRead }

type anthropicErrorReply struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

type namedEvent struct{ name, data string }

// namedEvents splits an SSE body of "event:" and "data:" pairs.
func namedEvents(t *testing.T, body []byte) []namedEvent {
	t.Helper()
	var out []namedEvent
	var name string
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "event: "); ok {
			name = v
		} else if v, ok := strings.CutPrefix(line, "data: "); ok {
			out = append(out, namedEvent{name: name, data: v})
			name = ""
		} else if line != "" {
			t.Fatalf("unexpected SSE line %q", line)
		}
	}
	return out
}

// messagesBody is a request with a system prompt and one user message.
func messagesBody(system, user string, maxTokens int) string {
	return fmt.Sprintf(`{"model":"sim-model","system":%q,"messages":[{"role":"user","content":%q}],"max_tokens":%d}`,
		system, user, maxTokens)
}

// rendered is what a system prompt and user turns render to.
func rendered(system string, users ...string) string {
	s := ""
	if system != "" {
		s = "<|im_start|>system\n" + system + "<|im_end|>\n"
	}
	for _, u := range users {
		s += "<|im_start|>user\n" + u + "<|im_end|>\n"
	}
	return s + "<|im_start|>assistant\n"
}

func postMessage(t *testing.T, c *http.Client, inst *Instance, body string) messageAnswer {
	t.Helper()
	r := post(t, c, inst.URL()+"/v1/messages", body)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	return decode[messageAnswer](t, r.body)
}

func TestMessagesNonStreaming(t *testing.T) {
	t.Parallel()
	cfg := quick()
	cfg.ServedModelNames = []string{"base", "alias"}
	inst := start(t, cfg)
	c := client(t)
	req, err := http.NewRequest(http.MethodPost, inst.URL()+"/v1/messages", strings.NewReader(
		`{"model":"alias","system":"You are terse.","messages":[{"role":"user","content":"hi"}],"max_tokens":3,"temperature":0.2}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("x-request-id", "req-7")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got messageAnswer
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, decode: %v", resp.StatusCode, err)
	}
	if resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("x-request-id") != "req-7" ||
		resp.Header.Get(EndpointHeader) != inst.HostPort() {
		t.Errorf("headers = %v", resp.Header)
	}
	if !strings.HasPrefix(got.ID, "msg_") || got.Type != "message" || got.Role != "assistant" || got.Model != "alias" {
		t.Errorf("envelope = %+v", got)
	}
	if len(got.Content) != 1 || got.Content[0].Type != "text" || len(strings.Fields(got.Content[0].Text)) != 3 {
		t.Errorf("content = %+v, want one text block of 3 words", got.Content)
	}
	if got.StopReason == nil || *got.StopReason != "max_tokens" || got.StopSequence != nil {
		t.Errorf("stop_reason %v, stop_sequence %v", got.StopReason, got.StopSequence)
	}
	u := got.Usage
	if u.CacheRead == nil || u.CacheCreation == nil || *u.CacheCreation != 0 || u.Output != 3 ||
		got.prompt() != tokenize.Count(rendered("You are terse.", "hi")) {
		t.Errorf("usage = %+v, want input + cache read = %d", u, tokenize.Count(rendered("You are terse.", "hi")))
	}
	if got.KV != nil {
		t.Errorf("ordinary answer carries kv_transfer_params")
	}
}

func TestMessagesPrefixCache(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	system := strings.Repeat("You are a careful assistant that answers routing questions briefly. ", 20)
	body := messagesBody(system, "What is a KV cache?", 2)
	first := postMessage(t, c, inst, body)
	prompt := tokenize.Count(rendered(system, "What is a KV cache?"))
	if first.prompt() != prompt || *first.Usage.CacheRead != 0 {
		t.Fatalf("first usage = %+v, want %d uncached prompt tokens", first.Usage, prompt)
	}
	again := postMessage(t, c, inst, body)
	if hit := *again.Usage.CacheRead; hit < prompt-16 || hit%16 != 0 || again.prompt() != prompt {
		t.Fatalf("repeat usage = %+v, want whole blocks covering the %d-token prompt", again.Usage, prompt)
	}
	// The next turn of the conversation starts with the whole first prompt.
	next := fmt.Sprintf(`{"model":"sim-model","system":%q,"max_tokens":1,"messages":[`+
		`{"role":"user","content":"What is a KV cache?"},{"role":"assistant","content":%q},`+
		`{"role":"user","content":"And prefix caching?"}]}`, system, first.Content[0].Text)
	if hit := *postMessage(t, c, inst, next).Usage.CacheRead; hit < prompt/16*16 {
		t.Fatalf("next turn hit %d tokens, want the first prompt's %d full blocks", hit, prompt/16)
	}
}

func TestMessagesBillingHeaderSkipped(t *testing.T) {
	t.Parallel()
	system := strings.Repeat("You are Claude Code, working in a repository of Go code. ", 20)
	withFirstBlock := func(first string) string {
		return fmt.Sprintf(`{"model":"sim-model","max_tokens":1,"system":[{"type":"text","text":%q},`+
			`{"type":"text","text":%q}],"messages":[{"role":"user","content":"Fix the test."}]}`, first, system)
	}
	// secondHit is the cache hit of the second of two requests to a fresh
	// instance.
	secondHit := func(a, b string) messageAnswer {
		inst, c := start(t, quick()), client(t)
		postMessage(t, c, inst, withFirstBlock(a))
		return postMessage(t, c, inst, withFirstBlock(b))
	}
	identical := secondHit("x-anthropic-billing-header: cch=aaaa1;", "x-anthropic-billing-header: cch=aaaa1;")
	differing := secondHit("x-anthropic-billing-header: cch=aaaa1;", "x-anthropic-billing-header: cch=bbbb2;")
	if want := tokenize.Count(rendered(system, "Fix the test.")); differing.prompt() != want {
		t.Fatalf("prompt of %d tokens, want %d: the billing block must render as nothing", differing.prompt(), want)
	}
	if hit := *differing.Usage.CacheRead; hit == 0 || hit != *identical.Usage.CacheRead || differing.Usage.Input != identical.Usage.Input {
		t.Fatalf("differing billing headers: %d input, %d read; identical requests: %d input, %d read",
			differing.Usage.Input, hit, identical.Usage.Input, *identical.Usage.CacheRead)
	}
	// Any other differing first block defeats the cache.
	if other := secondHit("session aaaa1", "session bbbb2"); *other.Usage.CacheRead != 0 {
		t.Fatalf("differing ordinary first block still hit %d tokens", *other.Usage.CacheRead)
	}
}

func TestMessagesStreaming(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	r := post(t, c, inst.URL()+"/v1/messages",
		`{"model":"sim-model","stream":true,"system":"Be brief.","messages":[{"role":"user","content":"hi"}],"max_tokens":5}`)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, Content-Type %q: %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	if bytes.Contains(r.body, []byte("[DONE]")) {
		t.Errorf("Anthropic stream carries [DONE]")
	}
	events := namedEvents(t, r.body)
	var names []string
	for _, ev := range events {
		names = append(names, ev.name)
		if typ := decode[struct{ Type string }](t, []byte(ev.data)).Type; typ != ev.name {
			t.Errorf("event %q carries type %q", ev.name, typ)
		}
	}
	want := []string{"message_start", "content_block_start"}
	for range 5 {
		want = append(want, "content_block_delta")
	}
	want = append(want, "content_block_stop", "message_delta", "message_stop")
	if diff := cmp.Diff(want, names); diff != "" {
		t.Fatalf("event sequence (-want +got):\n%s", diff)
	}
	start := decode[struct{ Message messageAnswer }](t, []byte(events[0].data)).Message
	if !strings.HasPrefix(start.ID, "msg_") || start.Role != "assistant" || start.Model != "sim-model" ||
		start.Content == nil || len(start.Content) != 0 || start.StopReason != nil {
		t.Errorf("message_start = %s", events[0].data)
	}
	if u := start.Usage; u.CacheRead == nil || u.CacheCreation == nil || u.Output != 0 ||
		start.prompt() != tokenize.Count(rendered("Be brief.", "hi")) {
		t.Errorf("message_start usage = %s", events[0].data)
	}
	if events[1].data != `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}` {
		t.Errorf("content_block_start = %s", events[1].data)
	}
	var text strings.Builder
	for _, ev := range events[2:7] {
		d := decode[struct {
			Index int
			Delta struct{ Type, Text string }
		}](t, []byte(ev.data))
		if d.Index != 0 || d.Delta.Type != "text_delta" {
			t.Errorf("delta = %s", ev.data)
		}
		text.WriteString(d.Delta.Text)
	}
	if n := len(strings.Fields(text.String())); n != 5 {
		t.Errorf("deltas spell %q, %d words; want 5", text.String(), n)
	}
	end := `{"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"output_tokens":5}}`
	if events[8].data != end {
		t.Errorf("message_delta = %s, want %s", events[8].data, end)
	}
}

// TestMessagesStreamStartsWithFirstToken checks message_start waits, as
// vLLM's first chunk does, until the first token exists.
func TestMessagesStreamStartsWithFirstToken(t *testing.T) {
	t.Parallel()
	const ttft = 40 * time.Millisecond
	inst := start(t, Config{Latency: Latency{TimeToFirstToken: Ptr(ttft), InterTokenLatency: Ptr(time.Millisecond)}})
	began := time.Now()
	resp, err := client(t).Post(inst.URL()+"/v1/messages", "application/json",
		strings.NewReader(strings.Replace(messagesBody("", "hi", 2), `"max_tokens"`, `"stream":true,"max_tokens"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "event: message_start\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	if waited := time.Since(began); waited < ttft {
		t.Fatalf("message_start after %s, before the first token (TTFT %s)", waited, ttft)
	}
}

func TestMessagesErrors(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	user := `"messages":[{"role":"user","content":"hi"}]`
	tests := []struct {
		name, path, body string
		status           int
		typ, mention     string
	}{
		{"malformed JSON", "", `{"model":`, 400, "invalid_request_error", "malformed JSON"},
		{"missing model", "", `{` + user + `,"max_tokens":1}`, 400, "invalid_request_error", "model: field required"},
		{"missing messages", "", `{"model":"sim-model","max_tokens":1}`, 400, "invalid_request_error", "messages: field required"},
		{"empty messages", "", `{"model":"sim-model","messages":[],"max_tokens":1}`, 400, "invalid_request_error", "messages: at least one"},
		{"messages not a list", "", `{"model":"sim-model","messages":"hi","max_tokens":1}`, 400, "invalid_request_error", "messages: must be a list"},
		{"missing max_tokens", "", `{"model":"sim-model",` + user + `}`, 400, "invalid_request_error", "max_tokens: field required"},
		{"zero max_tokens", "", `{"model":"sim-model",` + user + `,"max_tokens":0}`, 400, "invalid_request_error", "max_tokens: must be greater than 0"},
		{"max_tokens a string", "", `{"model":"sim-model",` + user + `,"max_tokens":"9"}`, 400, "invalid_request_error", "max_tokens: must be an integer, got string"},
		{"unknown model", "", `{"model":"gpt-9",` + user + `,"max_tokens":1}`, 404, "not_found_error", "gpt-9"},
		{"content a number", "", `{"model":"sim-model","messages":[{"role":"user","content":5}],"max_tokens":1}`,
			400, "invalid_request_error", "messages[0].content: must be a string or a list of content blocks"},
		{"missing content", "", `{"model":"sim-model","messages":[{"role":"user"}],"max_tokens":1}`,
			400, "invalid_request_error", "messages[0].content: field required"},
		{"block text a number", "", `{"model":"sim-model","messages":[{"role":"user","content":[{"type":"text","text":1}]}],"max_tokens":1}`,
			400, "invalid_request_error", "messages[0].content[0].text: must be a string, got number"},
		{"unknown block type", "", `{"model":"sim-model","messages":[{"role":"user","content":[{"type":"video"}]}],"max_tokens":1}`,
			400, "invalid_request_error", `messages[0].content[0].type: unsupported content block type "video"`},
		{"tool_use input not an object", "", `{"model":"sim-model","messages":[{"role":"assistant","content":[{"type":"tool_use","name":"f","input":[1]}]}],"max_tokens":1}`,
			400, "invalid_request_error", "messages[0].content[0].input: must be an object"},
		{"bad role", "", `{"model":"sim-model","messages":[{"role":"tool","content":"x"}],"max_tokens":1}`,
			400, "invalid_request_error", "messages[0].role"},
		{"system image block", "", `{"model":"sim-model","system":[{"type":"image"}],` + user + `,"max_tokens":1}`,
			400, "invalid_request_error", "system[0].type"},
		{"tool without name", "", `{"model":"sim-model","tools":[{"input_schema":{}}],` + user + `,"max_tokens":1}`,
			400, "invalid_request_error", "tools[0].name: field required"},
		{"count: unknown model", "/count_tokens", `{"model":"gpt-9",` + user + `}`, 404, "not_found_error", "gpt-9"},
		{"count: missing messages", "/count_tokens", `{"model":"sim-model"}`, 400, "invalid_request_error", "messages: field required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, c, inst.URL()+"/v1/messages"+tc.path, tc.body)
			e := decode[anthropicErrorReply](t, r.body)
			if r.status != tc.status || e.Type != "error" || e.Error.Type != tc.typ || !strings.Contains(e.Error.Message, tc.mention) {
				t.Fatalf("got %d %s; want %d %s mentioning %q", r.status, r.body, tc.status, tc.typ, tc.mention)
			}
		})
	}
	if st := inst.EngineMetrics(); st.Running+st.Waiting != 0 {
		t.Fatalf("a rejected request reached the engine: %+v", st)
	}
}

func TestMessagesKVTransfer(t *testing.T) {
	t.Parallel()
	prefiller, decoder := start(t, quick()), start(t, quick())
	c := client(t)
	prompt := fmt.Sprintf(`"model":"sim-model","max_tokens":7,"messages":[{"role":"user","content":%q}]`, longPrompt)
	r := post(t, c, prefiller.URL()+"/v1/messages", fmt.Sprintf(`{%s,"kv_transfer_params":%s}`, prompt, prefillParams))
	if r.status != http.StatusOK {
		t.Fatalf("prefill: %d %s", r.status, r.body)
	}
	got := decode[messageAnswer](t, r.body)
	if got.KV == nil || !got.KV.DoRemotePrefill || got.KV.RemotePort != prefiller.Port() || got.KV.RemoteEngineID != prefiller.EngineID() {
		t.Fatalf("prefill answer's kv_transfer_params = %+v", got.KV)
	}
	if got.Usage.Output != 1 || *got.StopReason != "max_tokens" {
		t.Fatalf("prefill generated %d tokens (stop %s), want 1 (max_tokens)", got.Usage.Output, *got.StopReason)
	}
	params := decode[struct {
		KV json.RawMessage `json:"kv_transfer_params"`
	}](t, r.body).KV
	r = post(t, c, prefiller.URL()+"/v1/messages", fmt.Sprintf(`{%s,"stream":true,"kv_transfer_params":%s}`, prompt, prefillParams))
	if e := decode[anthropicErrorReply](t, r.body); r.status != 400 || e.Error.Type != "invalid_request_error" ||
		!strings.Contains(e.Error.Message, "kv_transfer_params") {
		t.Fatalf("streamed prefill: %d %s", r.status, r.body)
	}
	r = post(t, c, prefiller.URL()+"/v1/messages", fmt.Sprintf(`{%s,"kv_transfer_params":5}`, prompt))
	if r.status != 400 || !strings.Contains(string(r.body), "kv_transfer_params must be an object") {
		t.Fatalf("malformed kv_transfer_params: %d %s", r.status, r.body)
	}
	// The decoder pulls all but the last prompt token, which usage shows
	// as read from cache.
	dec := postMessage(t, c, decoder, fmt.Sprintf(`{%s,"kv_transfer_params":%s}`, prompt, params))
	if dec.Usage.Input != 1 || dec.Usage.Output != 7 || dec.prompt() != got.prompt() {
		t.Fatalf("decode usage = %+v, want 1 input token, %d read, 7 output", dec.Usage, got.prompt()-1)
	}
	if st := decoder.KVTransferStats(); st.RemotePrefillRequests != 1 {
		t.Fatalf("decoder stats = %+v", st)
	}
}

func TestCountTokens(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	const blocks = `"system":[{"type":"text","text":"x-anthropic-billing-header: cch=1;"},{"type":"text","text":"Be brief."},` +
		`{"type":"text","text":" Use tools."}],"tools":[{"name":"grep","input_schema":{"type": "object"}}],"messages":[` +
		`{"role":"user","content":[{"type":"text","text":"Look"},{"type":"image","source":{"type":"base64","data":"AA"}},{"type":"text","text":"here"}]},` +
		`{"role":"system","content":"Extra."},` +
		`{"role":"assistant","content":[{"type":"thinking","thinking":"hmm","signature":"s"},{"type":"redacted_thinking","data":"x"},` +
		`{"type":"tool_use","id":"t1","name":"grep","input":{ "q" : "kv" }}]},` +
		`{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"found"}]},` +
		`{"type":"tool_result","tool_use_id":"t2","content":"none"}]}]`
	tests := []struct {
		name, fields, want string
	}{
		{"plain", `"system":"Be brief.","messages":[{"role":"user","content":"hi"}]`, rendered("Be brief.", "hi")},
		{"no system", `"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]`, rendered("", "hi")},
		{"content blocks", blocks, "<|im_start|>system\nBe brief. Use tools.Extra.\n\n# Tools\n" +
			`{"name":"grep","input_schema":{"type":"object"}}` + "\n<|im_end|>\n" +
			"<|im_start|>user\nLook\n" + imageMark + "\nhere<|im_end|>\n" +
			"<|im_start|>assistant\nhmm\ngrep {\"q\":\"kv\"}<|im_end|>\n" +
			"<|im_start|>user\nfound\nnone<|im_end|>\n<|im_start|>assistant\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, c, inst.URL()+"/v1/messages/count_tokens", `{"model":"sim-model",`+tc.fields+`}`)
			if r.status != http.StatusOK || r.header.Get(EndpointHeader) != inst.HostPort() {
				t.Fatalf("count_tokens: %d %s", r.status, r.body)
			}
			count := decode[struct {
				InputTokens *int `json:"input_tokens"`
			}](t, r.body).InputTokens
			if count == nil || *count != countWithImages(tc.want) {
				t.Fatalf("count_tokens = %s, want %d", r.body, countWithImages(tc.want))
			}
			if got := postMessage(t, c, inst, `{"model":"sim-model","max_tokens":1,`+tc.fields+`}`); got.prompt() != *count {
				t.Fatalf("messages usage %+v sums to %d, count_tokens said %d", got.Usage, got.prompt(), *count)
			}
		})
	}
	// The chat API renders the same conversation to the same prompt.
	chat := decode[chunk](t, post(t, c, inst.URL()+"/v1/chat/completions",
		`{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}],"max_tokens":1}`).body)
	if chat.Usage.Prompt != tokenize.Count(rendered("Be brief.", "hi")) {
		t.Fatalf("chat prompt has %d tokens, Anthropic rendering %d", chat.Usage.Prompt, tokenize.Count(rendered("Be brief.", "hi")))
	}
}

func TestMessagesFaults(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	body := messagesBody("", "x", 10)
	for status, typ := range map[int]string{500: "api_error", 503: "overloaded_error", 429: "rate_limit_error"} {
		if err := inst.SetFaults(Faults{CompletionsStatus: status}); err != nil {
			t.Fatal(err)
		}
		r := post(t, c, inst.URL()+"/v1/messages", body)
		if e := decode[anthropicErrorReply](t, r.body); r.status != status || e.Type != "error" || e.Error.Type != typ {
			t.Fatalf("fault %d: got %d %s, want %s", status, r.status, r.body, typ)
		}
	}
	if r := post(t, c, inst.URL()+"/v1/messages/count_tokens", `{"model":"sim-model","messages":[{"role":"user","content":"x"}]}`); r.status != 200 {
		t.Fatalf("count_tokens affected by the completions fault: %d %s", r.status, r.body)
	}
	if err := inst.SetFaults(Faults{DieAfterTokens: 3}); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Post(inst.URL()+"/v1/messages", "application/json",
		strings.NewReader(strings.Replace(body, `"max_tokens"`, `"stream":true,"max_tokens"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	deltas := 0
	for sc.Scan() {
		if sc.Text() == "event: content_block_delta" {
			deltas++
		}
	}
	if sc.Err() == nil || deltas != 3 {
		t.Fatalf("read %d deltas, then err %v; want 3 deltas then an abrupt close", deltas, sc.Err())
	}
	if _, err := c.Post(inst.URL()+"/v1/messages", "application/json", strings.NewReader(body)); err == nil {
		t.Fatal("non-streaming message survived the die fault")
	}
	waitFor(t, func() bool { m := inst.EngineMetrics(); return m.Running+m.Waiting == 0 })
}
