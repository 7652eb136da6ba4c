package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/sim/tokenize"
)

// kvReply is a completion answer with its kv_transfer_params.
type kvReply struct {
	chunk
	KV *struct {
		DoRemotePrefill bool     `json:"do_remote_prefill"`
		DoRemoteDecode  bool     `json:"do_remote_decode"`
		RemoteBlockIDs  []uint64 `json:"remote_block_ids"`
		RemoteEngineID  string   `json:"remote_engine_id"`
		RemoteHost      string   `json:"remote_host"`
		RemotePort      int      `json:"remote_port"`
	} `json:"kv_transfer_params"`
}

// prefillParams is what a decode sidecar sends with the prefill.
const prefillParams = `{"do_remote_decode":true,"do_remote_prefill":false,"remote_engine_id":null,` +
	`"remote_block_ids":null,"remote_host":null,"remote_port":null}`

// longPrompt has 300 tokens.
var longPrompt = strings.TrimSpace(strings.Repeat("word ", 300))

func TestPrefillOnlyRequest(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	for _, tc := range []struct {
		name, path, body string
		prompt           int
	}{
		{name: "completions", path: "/v1/completions",
			body:   fmt.Sprintf(`{"prompt":%q,"max_tokens":50,"kv_transfer_params":%s}`, longPrompt, prefillParams),
			prompt: 300},
		{name: "chat", path: "/v1/chat/completions",
			body:   fmt.Sprintf(`{"messages":[{"role":"user","content":"hi"}],"max_completion_tokens":9,"kv_transfer_params":%s}`, prefillParams),
			prompt: tokenize.Count("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, c, inst.URL()+tc.path, tc.body)
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			got := decode[kvReply](t, r.body)
			if got.Usage == nil || got.Usage.Completion != 1 || got.Usage.Prompt != tc.prompt || *got.Choices[0].Finish != "length" {
				t.Fatalf("want 1 token of a %d-token prompt, finish length: %s", tc.prompt, r.body)
			}
			kv := got.KV
			if kv == nil || !kv.DoRemotePrefill || kv.DoRemoteDecode || kv.RemoteHost != "127.0.0.1" ||
				kv.RemotePort != inst.Port() || kv.RemoteEngineID != inst.EngineID() || kv.RemoteEngineID == "" {
				t.Fatalf("kv_transfer_params = %+v; want this instance's address and engine", kv)
			}
			if want := (tc.prompt + 15) / 16; len(kv.RemoteBlockIDs) != want {
				t.Fatalf("%d block IDs for %d tokens, want %d", len(kv.RemoteBlockIDs), tc.prompt, want)
			}
		})
	}
	if st := inst.KVTransferStats(); st.RemoteDecodeRequests != 2 || st.RemotePrefillRequests != 0 {
		t.Fatalf("stats = %+v", st)
	}
	// An ordinary request's answer has no kv_transfer_params.
	r := post(t, c, inst.URL()+"/v1/completions", `{"prompt":"x","max_tokens":1}`)
	if strings.Contains(string(r.body), "kv_transfer_params") {
		t.Fatalf("ordinary answer carries kv_transfer_params: %s", r.body)
	}
}

func TestRemotePrefillRequest(t *testing.T) {
	t.Parallel()
	prefiller, decoder := start(t, quick()), start(t, quick())
	c := client(t)
	r := post(t, c, prefiller.URL()+"/v1/completions",
		fmt.Sprintf(`{"prompt":%q,"max_tokens":1,"kv_transfer_params":%s}`, longPrompt, prefillParams))
	params, err := json.Marshal(decode[kvReply](t, r.body).KV)
	if err != nil || r.status != http.StatusOK {
		t.Fatalf("prefill: %d %s", r.status, r.body)
	}
	for _, stream := range []bool{false, true} {
		body := fmt.Sprintf(`{"prompt":%q,"max_tokens":4,"stream":%t,"kv_transfer_params":%s}`, longPrompt, stream, params)
		if stream {
			body = strings.Replace(body, `"stream":true`, `"stream":true,"stream_options":{"include_usage":true}`, 1)
		}
		r := post(t, c, decoder.URL()+"/v1/completions", body)
		if r.status != http.StatusOK {
			t.Fatalf("decode (stream %t): %d %s", stream, r.status, r.body)
		}
		last := r.body
		if stream {
			events := sseEvents(t, r.body)
			last = []byte(events[len(events)-2]) // the usage chunk, before [DONE]
		}
		u := decode[kvReply](t, last).Usage
		// vLLM counts pulled tokens as computed: all but the last.
		if u == nil || u.Prompt != 300 || u.Details.Cached != 299 || u.Completion != 4 {
			t.Fatalf("usage (stream %t) = %+v, want 300 prompt, 299 cached, 4 completion", stream, u)
		}
	}
	want := KVTransferStats{RemotePrefillRequests: 2, TransferredTokens: 300 + 300 - 288}
	if diff := cmp.Diff(want, decoder.KVTransferStats()); diff != "" {
		t.Fatalf("decoder stats (-want +got); the second pull skips 18 cached blocks:\n%s", diff)
	}
	_, text := scrapeText(t, c, decoder)
	fams := parsePage(t, text)
	for name, v := range map[string]float64{
		"openepp_sim_kv_remote_prefill_requests_total": 2,
		"openepp_sim_kv_remote_decode_requests_total":  0,
		"openepp_sim_kv_transfer_tokens_total":         312,
	} {
		if got := value(t, fams, name, map[string]string{"model_name": "sim-model"}); got != v {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
	if fams["vllm:num_requests_waiting"] == nil {
		t.Error("vLLM families missing next to the openepp_sim ones")
	}
}

func TestKVTransferParamsErrors(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	pd := `"do_remote_prefill":true,"remote_engine_id":"e","remote_host":"10.0.0.1","remote_block_ids":[1]`
	for _, tc := range []struct {
		name, body, want string
	}{
		{"string", `"yes"`, "must be an object"},
		{"list", `[true]`, "must be an object"},
		{"number", `5`, "must be an object"},
		{"flag not a boolean", `{"do_remote_decode":"true"}`, "do_remote_decode: must be a boolean"},
		{"both flags", `{"do_remote_decode":true,"do_remote_prefill":true}`, "cannot both be true"},
		{"prefill without address", `{"do_remote_prefill":true,"remote_block_ids":[1]}`, "needs remote_engine_id"},
		{"port as string", `{` + pd + `,"remote_port":"80"}`, "remote_port: must be an integer"},
		{"port out of range", `{` + pd + `,"remote_port":70000}`, "70000 is not a port"},
		{"fractional port", `{` + pd + `,"remote_port":80.5}`, "remote_port: must be an integer"},
		{"block ids not a list", `{"do_remote_decode":true,"remote_block_ids":{"a":1}}`, "remote_block_ids: must be a list"},
		{"negative block id", `{` + pd + `,"remote_port":80,"remote_block_ids":[-1]}`, "is negative"},
		{"engine id not a string", `{"remote_engine_id":7}`, "remote_engine_id: must be a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, c, inst.URL()+"/v1/completions", `{"prompt":"x","kv_transfer_params":`+tc.body+`}`)
			checkKVError(t, r, tc.want)
		})
	}
	t.Run("prompt list", func(t *testing.T) {
		r := post(t, c, inst.URL()+"/v1/completions", `{"prompt":["a","b"],"kv_transfer_params":`+prefillParams+`}`)
		checkKVError(t, r, "single prompt")
	})
	t.Run("streaming prefill", func(t *testing.T) {
		r := post(t, c, inst.URL()+"/v1/chat/completions",
			`{"messages":[{"role":"user","content":"x"}],"stream":true,"kv_transfer_params":`+prefillParams+`}`)
		checkKVError(t, r, "needs stream=false")
	})
	if st := inst.KVTransferStats(); st != (KVTransferStats{}) {
		t.Fatalf("rejected requests were counted: %+v", st)
	}
	// Null and empty params are no params.
	for _, p := range []string{`null`, `{}`, `{"do_remote_decode":false,"remote_host":null}`} {
		r := post(t, c, inst.URL()+"/v1/completions", `{"prompt":"x","max_tokens":2,"kv_transfer_params":`+p+`}`)
		if r.status != http.StatusOK || decode[kvReply](t, r.body).Usage.Completion != 2 {
			t.Fatalf("params %s: %d %s", p, r.status, r.body)
		}
	}
}

func checkKVError(t *testing.T, r reply, want string) {
	t.Helper()
	if r.status != http.StatusBadRequest {
		t.Fatalf("status %d, want 400: %s", r.status, r.body)
	}
	e := decode[wireError](t, r.body)
	if e.Error.Type != "BadRequestError" || e.Error.Param == nil || *e.Error.Param != "kv_transfer_params" ||
		!strings.Contains(e.Error.Message, want) {
		t.Fatalf("error = %s, want a kv_transfer_params error containing %q", r.body, want)
	}
}
