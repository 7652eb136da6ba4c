package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/sim/engine"
)

// priorityAPI is one generation API as the priority tests drive it.
type priorityAPI struct {
	name, path string
	// body is a request with a shared prompt of several blocks; priority is
	// the raw JSON value of the field, "" to leave it out.
	body func(priority string) string
	// cached reads the prefix-cache hit from a successful answer.
	cached func(t *testing.T, b []byte) int
	// check verifies an error answer has the API's shape and names the
	// field.
	check func(t *testing.T, b []byte)
}

// sharedText is a prompt of about 80 tokens (5 blocks of 16).
var sharedText = strings.Repeat("every queued request shares this prompt ", 16)

// withPriority adds a top-level priority member to a JSON object body.
func withPriority(body, priority string) string {
	if priority == "" {
		return body
	}
	return strings.TrimSuffix(body, "}") + `,"priority":` + priority + "}"
}

var priorityAPIs = []priorityAPI{
	{name: "completions", path: "/v1/completions",
		body: func(p string) string {
			return withPriority(fmt.Sprintf(`{"prompt":%q,"max_tokens":30}`, sharedText), p)
		},
		cached: openAICached, check: openAIPriorityError},
	{name: "chat", path: "/v1/chat/completions",
		body: func(p string) string {
			return withPriority(fmt.Sprintf(`{"messages":[{"role":"user","content":%q}],"max_tokens":30}`, sharedText), p)
		},
		cached: openAICached, check: openAIPriorityError},
	{name: "messages", path: "/v1/messages",
		body: func(p string) string {
			return withPriority(fmt.Sprintf(`{"model":"sim-model","max_tokens":30,"messages":[{"role":"user","content":%q}]}`, sharedText), p)
		},
		cached: func(t *testing.T, b []byte) int {
			return decode[struct {
				Usage struct {
					CacheRead int `json:"cache_read_input_tokens"`
				} `json:"usage"`
			}](t, b).Usage.CacheRead
		},
		check: func(t *testing.T, b []byte) {
			got := decode[struct {
				Type  string `json:"type"`
				Error struct {
					Type    string `json:"type"`
					Message string `json:"message"`
				} `json:"error"`
			}](t, b)
			if got.Type != "error" || got.Error.Type != "invalid_request_error" || !strings.HasPrefix(got.Error.Message, "priority:") {
				t.Errorf("Anthropic error = %+v, want an invalid_request_error naming priority", got)
			}
		}},
	{name: "generate tokens", path: generateTokensPath,
		body: func(p string) string {
			return withPriority(`{"token_ids":`+idList(80)+`,"sampling_params":{"max_tokens":30}}`, p)
		},
		cached: openAICached, check: openAIPriorityError},
	{name: "sglang generate", path: sglangGeneratePath,
		body: func(p string) string {
			return withPriority(fmt.Sprintf(`{"text":%q,"sampling_params":{"max_new_tokens":30}}`, sharedText), p)
		},
		cached: func(t *testing.T, b []byte) int {
			return decode[struct {
				Meta struct {
					Cached int `json:"cached_tokens"`
				} `json:"meta_info"`
			}](t, b).Meta.Cached
		},
		check: func(t *testing.T, b []byte) {
			got := decode[map[string]map[string]any](t, b)
			msg, _ := got["error"]["message"].(string)
			if len(got) != 1 || len(got["error"]) != 1 || !strings.HasPrefix(msg, "priority:") {
				t.Errorf("SGLang error = %s, want {error: {message}} naming priority", b)
			}
		}},
}

func openAICached(t *testing.T, b []byte) int {
	t.Helper()
	return decode[struct {
		Usage usageAnswer `json:"usage"`
	}](t, b).Usage.Details.Cached
}

func openAIPriorityError(t *testing.T, b []byte) {
	t.Helper()
	got := decode[wireError](t, b)
	if got.Error.Param == nil || *got.Error.Param != "priority" || got.Error.Code != http.StatusBadRequest ||
		!strings.HasPrefix(got.Error.Message, "priority:") {
		t.Errorf("OpenAI error = %s, want param priority, code 400", b)
	}
}

// serialConfig is an instance running one sequence at a time, an
// iteration a millisecond, with policy and metrics engine as given.
func serialConfig(policy, metricsEngine string) Config {
	cfg := quick()
	cfg.Latency.InterTokenLatency = Ptr(time.Millisecond)
	cfg.Capacity.MaxNumSeqs = 1
	cfg.SchedulingPolicy, cfg.MetricsEngine = policy, metricsEngine
	return cfg
}

// queuedReply is the answer to one queued request.
type queuedReply struct {
	status int
	body   []byte
	err    error
}

// runQueued sends a blocker to inst (which runs one sequence at a time),
// then, once it runs, the requests of bodies to path one by one, each
// after the engine counts the previous one waiting, and then cancels the
// blocker so that the queue drains in the engine's order. It returns the
// replies by index and the indexes in the order the replies arrived.
func runQueued(t *testing.T, inst *Instance, path string, bodies []string) ([]queuedReply, []int) {
	t.Helper()
	c := client(t)
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancelBlocker := context.WithCancel(context.Background())
	defer cancelBlocker() // before wg.Wait, should the test fail early
	blocker := `{"prompt":"a blocker that decodes until it is cancelled","max_tokens":20000}`
	wg.Go(func() { send(ctx, c, inst.URL()+"/v1/completions", blocker) })
	awaitEngine(t, inst, func(m engine.Metrics) bool { return m.Running == 1 })

	replies := make([]queuedReply, len(bodies))
	var mu sync.Mutex
	var order []int
	for j, body := range bodies {
		wg.Go(func() {
			r := send(context.Background(), c, inst.URL()+path, body)
			mu.Lock()
			defer mu.Unlock()
			replies[j] = r
			order = append(order, j)
		})
		awaitEngine(t, inst, func(m engine.Metrics) bool { return m.Waiting == j+1 })
	}
	cancelBlocker()
	wg.Wait()
	return replies, order
}

// send posts body to url; it does not fail the test, so it may run on any
// goroutine.
func send(ctx context.Context, c *http.Client, url, body string) queuedReply {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return queuedReply{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return queuedReply{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return queuedReply{status: resp.StatusCode, body: b, err: err}
}

// awaitEngine polls the engine until ok holds, failing after 5 s.
func awaitEngine(t *testing.T, inst *Instance, ok func(engine.Metrics) bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(inst.EngineMetrics()); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("engine never reached the expected state: %+v", inst.EngineMetrics())
		}
	}
}

// priorityCase is one row of TestPriorityScheduling: three requests to
// api with priorities (raw JSON, "" for none), on a server with policy
// and metricsEngine, must run in the order want (indexes).
type priorityCase struct {
	name          string
	api           priorityAPI
	policy        string
	metricsEngine string
	priorities    [3]string
	want          []int
}

// TestPriorityScheduling queues three requests with the same prompt behind
// a blocker on a one-sequence server, the last one the most urgent under
// vLLM's convention or under SGLang's, and checks the order they run in:
// by the order their answers arrive (each runs about 30 iterations of
// 1 ms after the one before) and, independently of timing, by which one
// found nothing in the prefix cache (the first to run computes the shared
// prompt; the others hit it).
func TestPriorityScheduling(t *testing.T) {
	t.Parallel()
	tests := []priorityCase{
		{name: "priority: lower first", api: priorityAPIs[0], policy: "priority",
			priorities: [3]string{"5", "5", "1"}, want: []int{2, 0, 1}},
		{name: "priority: equal priorities by arrival", api: priorityAPIs[0], policy: "priority",
			priorities: [3]string{"", "null", "0"}, want: []int{0, 1, 2}},
		{name: "fcfs ignores priority", api: priorityAPIs[0], policy: "fcfs",
			priorities: [3]string{"5", "5", "1"}, want: []int{0, 1, 2}},
		{name: "default policy is fcfs", api: priorityAPIs[0],
			priorities: [3]string{"5", "5", "1"}, want: []int{0, 1, 2}},
		{name: "sglang: higher first", api: priorityAPIs[0], policy: "priority", metricsEngine: EngineSGLang,
			priorities: [3]string{"1", "1", "5"}, want: []int{2, 0, 1}},
		{name: "sglang: vLLM's urgent value is least urgent", api: priorityAPIs[0], policy: "priority",
			metricsEngine: EngineSGLang, priorities: [3]string{"5", "5", "1"}, want: []int{0, 1, 2}},
		{name: "sglang generate on sglang", api: priorityAPIs[4], policy: "priority", metricsEngine: EngineSGLang,
			priorities: [3]string{"-1", "0", "2"}, want: []int{2, 1, 0}},
	}
	for _, api := range priorityAPIs[1:] {
		tests = append(tests, priorityCase{name: api.name + ": lower first", api: api, policy: "priority",
			priorities: [3]string{"3", "3", "-2"}, want: []int{2, 0, 1}})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			inst := start(t, serialConfig(tc.policy, tc.metricsEngine))
			bodies := make([]string, 3)
			for j, p := range tc.priorities {
				bodies[j] = tc.api.body(p)
			}
			replies, order := runQueued(t, inst, tc.api.path, bodies)
			for j, r := range replies {
				if r.err != nil || r.status != http.StatusOK {
					t.Fatalf("request %d: status %d, err %v: %s", j, r.status, r.err, r.body)
				}
			}
			if first := tc.want[0]; tc.api.cached(t, replies[first].body) != 0 {
				t.Errorf("request %d hit the prefix cache; it should have run first", first)
			}
			for _, j := range tc.want[1:] {
				if tc.api.cached(t, replies[j].body) == 0 {
					t.Errorf("request %d missed the prefix cache; request %d should have run before it", j, tc.want[0])
				}
			}
			if diff := cmp.Diff(tc.want, order); diff != "" {
				t.Errorf("completion order (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPriorityMalformed(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	bad := []string{`"1"`, `1.5`, `{}`, `true`, `[1]`, `2147483648`, `-2147483649`, `1e10`}
	for _, api := range priorityAPIs {
		for _, v := range bad {
			t.Run(api.name+" "+v, func(t *testing.T) {
				r := post(t, c, inst.URL()+api.path, api.body(v))
				if r.status != http.StatusBadRequest {
					t.Fatalf("status %d, want 400: %s", r.status, r.body)
				}
				api.check(t, r.body)
			})
		}
	}
	if m := inst.EngineMetrics(); m.Finished+uint64(m.Running+m.Waiting) != 0 {
		t.Errorf("malformed requests reached the engine: %+v", m)
	}
}

func TestParsePriority(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw     string
		want    int
		wantErr string
	}{
		{raw: "", want: 0},
		{raw: " null ", want: 0},
		{raw: "0", want: 0},
		{raw: "-7", want: -7},
		{raw: "2.0", want: 2},
		{raw: "1e3", want: 1000},
		{raw: "2147483647", want: 2147483647},
		{raw: "-2147483648", want: -2147483648},
		{raw: "2147483648", wantErr: "priority: must be in [-2147483648, 2147483647], got 2147483648"},
		{raw: "-1e300", wantErr: "must be in"},
		{raw: "1e400", wantErr: "must be in"},
		{raw: "0.5", wantErr: "priority: must be an integer, got 0.5"},
		{raw: `"3"`, wantErr: "priority: must be an integer, got a string"},
		{raw: "false", wantErr: "got a boolean"},
		{raw: `{"a":1}`, wantErr: "got an object"},
		{raw: "[]", wantErr: "got a list"},
	}
	for _, tc := range tests {
		got, err := parsePriority(json.RawMessage(tc.raw))
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parsePriority(%s) = %d, %v; want error %q", tc.raw, got, err, tc.wantErr)
			}
		case err != nil || got != tc.want:
			t.Errorf("parsePriority(%s) = %d, %v; want %d", tc.raw, got, err, tc.want)
		}
	}
}
