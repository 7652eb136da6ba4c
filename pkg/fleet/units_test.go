package fleet

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/sim/tokenize"
)

// stringsBuilder is a strings.Builder with a containment check.
type stringsBuilder struct{ strings.Builder }

func (b *stringsBuilder) contains(s string) bool { return strings.Contains(b.String(), s) }

func TestGeneratedTextTokenCounts(t *testing.T) {
	t.Parallel()
	rng := newRand(3)
	for _, n := range []int{0, 1, 7, 150, 1000} {
		if got := tokenize.Count(words(rng, n)); got != n {
			t.Errorf("words(%d) tokenizes to %d tokens", n, got)
		}
	}
}

func TestSharedPrefixPrompts(t *testing.T) {
	t.Parallel()
	tr := Traffic{Shape: ShapeSharedPrefix, Groups: 3, PromptsPerGroup: 4, SystemTokens: 100, QuestionTokens: 20, OutputTokens: 5}
	src, err := newSource(tr, "m", 9)
	if err != nil {
		t.Fatal(err)
	}
	rng := newRand(1)
	bySys := map[string]bool{}
	for range 200 {
		p, err := src.next(rng)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.tokens) != 120 || p.maxTokens != 5 || p.body.Model != "m" || p.body.MaxTokens != 5 {
			t.Fatalf("prompt: %d tokens, max %d, model %q, body max %d", len(p.tokens), p.maxTokens, p.body.Model, p.body.MaxTokens)
		}
		// The first 100 tokens are the group's system prompt.
		bySys[string(json.RawMessage(p.body.Prompt[:300]))] = true
	}
	if len(bySys) != 3 {
		t.Errorf("%d distinct system prompts, want 3", len(bySys))
	}
}

func TestMultiTurnGrows(t *testing.T) {
	t.Parallel()
	tr := Traffic{Shape: ShapeMultiTurn, Groups: 1, PromptsPerGroup: 1, SystemTokens: 50, QuestionTokens: 10, OutputTokens: 8, Turns: 3}
	src, err := newSource(tr, "m", 1)
	if err != nil {
		t.Fatal(err)
	}
	rng := newRand(1)
	var prev *prompt
	var lens []int
	for i := range 4 {
		p, err := src.next(rng)
		if err != nil {
			t.Fatal(err)
		}
		lens = append(lens, len(p.tokens))
		if i > 0 && i < 3 {
			// Same chat: the previous body's messages are a byte prefix,
			// up to the closing bracket, and so are its tokens.
			prevMsgs := prev.body.Prompt[:len(prev.body.Prompt)-1]
			if !strings.HasPrefix(string(p.body.Prompt), string(prevMsgs)) {
				t.Errorf("turn %d does not extend the previous turn's messages", i)
			}
			if !cmp.Equal(p.tokens[:len(prev.tokens)], prev.tokens) {
				t.Errorf("turn %d does not extend the previous turn's tokens", i)
			}
		}
		prev = p
	}
	if !(lens[1] > lens[0] && lens[2] > lens[1] && lens[3] == lens[0]) {
		t.Errorf("prompt lengths %v: want growth over 3 turns, then a restart", lens)
	}
}

// TestMultiTurnUsersDiffer: users of one group share the system prompt
// only; their chats at the same turn are different conversations.
func TestMultiTurnUsersDiffer(t *testing.T) {
	t.Parallel()
	tr := Traffic{Shape: ShapeMultiTurn, Groups: 1, PromptsPerGroup: 4, SystemTokens: 50, QuestionTokens: 10, OutputTokens: 8, Turns: 100}
	src, err := newSource(tr, "m", 1)
	if err != nil {
		t.Fatal(err)
	}
	rng := newRand(1)
	// Without restarts, prompts of one length are one turn of different
	// users: each must be its own conversation.
	seen, distinct := map[int]int{}, map[int]map[string]bool{}
	for range 40 {
		p, err := src.next(rng)
		if err != nil {
			t.Fatal(err)
		}
		n := len(p.tokens)
		if distinct[n] == nil {
			distinct[n] = map[string]bool{}
		}
		seen[n]++
		distinct[n][string(p.body.Prompt)] = true
	}
	for n, k := range seen {
		if len(distinct[n]) != k {
			t.Errorf("%d users sent %d-token prompts but only %d distinct ones: users repeat each other", k, n, len(distinct[n]))
		}
	}
}

// TestMultiTurnToolSets: with tool sets, a user's bodies carry its set's
// tools after the system message (where the EPP's index places them) and
// the engine's tokens have them after the system prompt; users of the same
// set share system and tools, users of other sets the system prompt only.
func TestMultiTurnToolSets(t *testing.T) {
	t.Parallel()
	tr := Traffic{Shape: ShapeMultiTurn, Groups: 1, PromptsPerGroup: 4, SystemTokens: 50, QuestionTokens: 10,
		OutputTokens: 8, Turns: 100, ToolSets: 2, ToolTokens: 30}
	if err := tr.validate(); err != nil {
		t.Fatal(err)
	}
	m := newMultiTurn(tr, "m", 1)
	for u := range m.users {
		m.restart(&m.users[u], u)
	}
	sys := len(chatTokens(nil, m.users[0].msgs[0]))
	for u, c := range m.users {
		if len(c.tokens) != sys+30 {
			t.Fatalf("user %d: %d tokens before the first question, want system %d + tools 30", u, len(c.tokens), sys)
		}
	}
	other := m.users[1] // set 1; users 0 and 2 have set 0
	if !cmp.Equal(m.users[0].tokens, m.users[2].tokens) || cmp.Equal(m.users[0].tokens, other.tokens) ||
		!cmp.Equal(m.users[0].tokens[:sys], other.tokens[:sys]) {
		t.Error("want users 0 and 2 (set 0) alike, user 1 (set 1) sharing the system prompt only")
	}
	p, err := m.next(newRand(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.body.Tools) == 0 || p.body.ToolsAt == 0 || !strings.HasPrefix(string(p.body.Prompt[:p.body.ToolsAt]), `[{"role":"system"`) {
		t.Errorf("body tools %d bytes at %d: want them after the system message", len(p.body.Tools), p.body.ToolsAt)
	}
	for _, bad := range []Traffic{{ToolSets: 2}, {ToolTokens: 5}, {ToolSets: -1, ToolTokens: 5}} {
		bad.Shape, bad.Groups, bad.PromptsPerGroup, bad.QuestionTokens, bad.OutputTokens, bad.Turns = ShapeMultiTurn, 1, 1, 1, 1, 1
		if err := bad.validate(); err == nil || !strings.Contains(err.Error(), "toolSets") {
			t.Errorf("%+v: error %v, want one naming toolSets", bad, err)
		}
	}
}

func TestShareGPTAndAdapters(t *testing.T) {
	t.Parallel()
	tr := Traffic{Shape: ShapeShareGPT, Input: LogNormal{Median: 100, Mean: 200, Max: 500}, Output: LogNormal{Median: 10, Mean: 20, Max: 40},
		Adapters: []AdapterClass{{Count: 2, Share: 0.4}, {Count: 2, Share: 0.1}}}
	src, err := newSource(tr, "base", 1)
	if err != nil {
		t.Fatal(err)
	}
	rng := newRand(2)
	count := map[string]int{}
	sum := 0
	const n = 4000
	for range n {
		p, err := src.next(rng)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.tokens) < 1 || len(p.tokens) > 500 || p.maxTokens < 1 || p.maxTokens > 40 || p.body.Model != p.lora {
			t.Fatalf("prompt of %d tokens, %d out, model %q adapter %q", len(p.tokens), p.maxTokens, p.body.Model, p.lora)
		}
		count[p.lora]++
		sum += len(p.tokens)
	}
	if len(count) != 4 || count["lora-01"] < count["lora-03"]*3 {
		t.Errorf("adapter split %v, want 4 adapters, lora-01 about 4× lora-03", count)
	}
	if mean := float64(sum) / n; mean < 150 || mean > 230 {
		t.Errorf("mean input %.0f tokens, want about 190 (200 before clamping)", mean)
	}
}

func TestValidationErrors(t *testing.T) {
	t.Parallel()
	good, _ := WorkloadByName("W1")
	cases := []struct {
		name string
		edit func(w *Workload)
		want string
	}{
		{"servers", func(w *Workload) { w.Servers = 0 }, "servers"},
		{"ladder", func(w *Workload) { w.Ladder = nil }, "ladder"},
		{"negative qps", func(w *Workload) { w.Ladder = []float64{-1} }, "ladder[0]"},
		{"nan qps", func(w *Workload) { w.Ladder = []float64{math.NaN()} }, "ladder[0]"},
		{"duration", func(w *Workload) { w.Duration = 0 }, "duration"},
		{"kv fraction", func(w *Workload) { w.KVFraction = 2 }, "kvFraction"},
		{"slo", func(w *Workload) { w.SLO = SLO{} }, "slo"},
		{"shape", func(w *Workload) { w.Traffic.Shape = "zipf" }, "shape"},
		{"groups", func(w *Workload) { w.Traffic.Groups = 0 }, "groups"},
		{"adapters", func(w *Workload) { w.Traffic.Adapters = []AdapterClass{{Count: 1, Share: 0.5}} }, "sum to 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := good
			w.Traffic.Adapters = nil
			tc.edit(&w)
			err := w.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error mentioning %q", err, tc.want)
			}
			p, _ := Builtin(PolicyRoundRobin)
			if _, err := Run(context.Background(), RunSpec{Workload: w, Policy: p, QPS: 1}); err == nil {
				t.Error("Run accepted the invalid workload")
			}
		})
	}
}

func TestRunSpecAndPolicyErrors(t *testing.T) {
	t.Parallel()
	w, _ := WorkloadByName("W4")
	w = tiny(w)
	rr, _ := Builtin(PolicyRoundRobin)
	cases := []struct {
		name string
		spec RunSpec
		want string
	}{
		{"zero qps", RunSpec{Workload: w, Policy: rr}, "qps"},
		{"jitter above interval", RunSpec{Workload: w, Policy: rr, QPS: 10, ScrapeInterval: 10 * time.Millisecond, ScrapeJitter: 20 * time.Millisecond}, "jitter"},
		{"no policy", RunSpec{Workload: w, QPS: 10}, "policy"},
		{"bad yaml", RunSpec{Workload: w, QPS: 10, Policy: ConfigPolicy("x", "", []byte("plugins: [:"))}, "policy \"x\""},
		{"unknown plugin", RunSpec{Workload: w, QPS: 10, Policy: ConfigPolicy("x", "", []byte(strings.ReplaceAll(prefixOnlyConfig, "prefix-cache-scorer", "nope")))}, "nope"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Run(context.Background(), tc.spec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := Builtin("fastest"); err == nil {
		t.Error("Builtin accepted an unknown name")
	}
	if _, err := SelectPolicies(StandardPolicies(nil), []string{"round-robin", "nope"}); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("SelectPolicies error = %v", err)
	}
	if _, err := WorkloadByName("W99"); err == nil || !strings.Contains(err.Error(), "shared-prefix") {
		t.Errorf("WorkloadByName error = %v, want the known names listed", err)
	}
	dup := &Matrix{Workloads: []Workload{w}, Policies: []Policy{rr, rr}}
	if _, err := dup.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("matrix with a duplicate policy: %v", err)
	}
	if _, err := (&Matrix{}).Run(context.Background()); err == nil {
		t.Error("empty matrix accepted")
	}
}

func TestCancelledContext(t *testing.T) {
	t.Parallel()
	w, _ := WorkloadByName("W1")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rr, _ := Builtin(PolicyRoundRobin)
	if _, err := Run(ctx, RunSpec{Workload: tiny(w), Policy: rr, QPS: 50}); err == nil {
		t.Fatal("a cancelled run reported success")
	}
}

// TestSizingRule checks the KV sizing of the shared-prefix workloads: the
// working set is 73 % of the fleet's cache and more than 4 servers' worth.
func TestSizingRule(t *testing.T) {
	t.Parallel()
	for _, w := range Workloads() {
		if w.KVFraction == 0 {
			continue
		}
		wr := newWorkloadReport(w)
		if math.Abs(wr.WorkingSetPct-73) > 1 || wr.WorkingSetServers < 4 {
			t.Errorf("%s: working set %.1f %% of fleet KV, %.1f servers' worth", w.Name, wr.WorkingSetPct, wr.WorkingSetServers)
		}
	}
}

func TestPercentiles(t *testing.T) {
	t.Parallel()
	v := []float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	want := Percentiles{Mean: 5.5, P50: 5, P90: 9, P99: 10}
	if diff := cmp.Diff(want, percentiles(v)); diff != "" {
		t.Errorf("percentiles (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Percentiles{}, percentiles(nil)); diff != "" {
		t.Errorf("empty: %s", diff)
	}
}

func TestEventQueueOrder(t *testing.T) {
	t.Parallel()
	var q eventQueue
	for _, at := range []time.Duration{5, 1, 5, 3, 1} {
		q.push(event{at: at, id: uint64(at)*10 + uint64(q.Len())})
	}
	var got []uint64
	for q.Len() > 0 {
		got = append(got, q.pop().id)
	}
	// Equal times keep insertion order.
	if diff := cmp.Diff([]uint64{11, 14, 33, 50, 52}, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

func TestLRUSet(t *testing.T) {
	t.Parallel()
	l := newLRUSet()
	for _, h := range []uint64{1, 2, 3} {
		l.add(h, 3)
	}
	l.add(1, 3) // refresh 1: 2 is now the oldest
	l.add(4, 3)
	if diff := cmp.Diff(0, l.leading([]uint64{2})); diff != "" {
		t.Errorf("2 should be evicted: %s", diff)
	}
	if got := l.leading([]uint64{1, 3, 4, 2}); got != 3 {
		t.Errorf("leading = %d, want 3", got)
	}
}

// TestUpstreamFormula checks the re-implemented upstream scoring on
// hand-made metrics: queue and KV pull towards the idle server until a
// prompt's prefix has been routed, then affinity (weight 3) wins.
func TestUpstreamFormula(t *testing.T) {
	t.Parallel()
	eps := []*endpoint.Endpoint{endpoint.New(endpoint.Spec{Address: "10.0.0.1", Port: 8000}), endpoint.New(endpoint.Spec{Address: "10.0.0.2", Port: 8000})}
	set := func(e *endpoint.Endpoint, q int, kv float64) {
		e.SetMetrics(&endpoint.Metrics{WaitingQueueSize: q, KVCacheUsagePercent: kv, CacheBlockSize: 16, CacheNumBlocks: 1000})
	}
	set(eps[0], 0, 0.1)
	set(eps[1], 4, 0.5)
	r := newUpstreamRouter(eps, 1)
	f := func(text string) *flight {
		b, err := request.Parse(request.Completions, []byte(`{"model":"m","prompt":"`+text+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		return &flight{p: &prompt{body: b}}
	}
	long := strings.Repeat("abcd ", 100)
	if i, _ := r.route(f(long)); i != 0 {
		t.Fatalf("cold request went to %d, want the idle server 0", i)
	}
	set(eps[0], 4, 0.5) // now both equally loaded: affinity decides
	set(eps[1], 0, 0.1) // server 1 looks better on load (2 + 0.8 points)…
	if i, _ := r.route(f(long)); i != 0 {
		t.Errorf("warm request went to %d, want 0: prefix (3 points) beats load (2.8)", i)
	}
}

// recorder is an out-of-tree plugin that counts lifecycle hooks and checks
// that the metrics it sees are scraped-looking: refreshed on the scrape
// interval, never from the future.
type recorder struct {
	pre, done, cancelled int
	maxAge               time.Duration
	clock                scheduler.Clock
}

func (r *recorder) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: "recorder", Name: "recorder"}
}

func (r *recorder) Score(_ context.Context, st *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint) []float64 {
	for _, e := range eps {
		r.maxAge = max(r.maxAge, st.Now.Sub(e.Metrics().UpdateTime))
	}
	return make([]float64, len(eps))
}

func (r *recorder) PreRequest(context.Context, *scheduler.State, *scheduler.Request, *scheduler.Result) {
	r.pre++
}

func (r *recorder) ResponseComplete(_ context.Context, _ *scheduler.State, _ *scheduler.Request, resp *scheduler.Response) {
	r.done++
	if resp.Cancelled {
		r.cancelled++
	}
}

func TestHooksAndScrapeAge(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	reg := scheduler.Registration{Type: "recorder", Factory: func(string, json.RawMessage, *scheduler.Handle) (scheduler.Plugin, error) {
		return rec, nil
	}}
	cfg := `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: recorder
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: recorder
`
	w, _ := WorkloadByName("W1")
	w = tiny(w)
	// Overload with a short client timeout, so that some requests are
	// cancelled and must still be released.
	spec := RunSpec{Workload: w, Policy: ConfigPolicy("rec", "", []byte(cfg), reg), QPS: 400, Seed: 1, Timeout: 2 * time.Second}
	res, err := Run(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if rec.pre == 0 || rec.pre != rec.done {
		t.Errorf("%d PreRequest, %d ResponseComplete: every routed request must be released once", rec.pre, rec.done)
	}
	if rec.cancelled == 0 || res.TimedOut == 0 {
		t.Errorf("%d cancelled responses, %d timed out: want some of each", rec.cancelled, res.TimedOut)
	}
	if limit := DefaultScrapeInterval + DefaultScrapeJitter; rec.maxAge <= 0 || rec.maxAge > limit {
		t.Errorf("oldest metrics seen were %s old, want within (0, %s]", rec.maxAge, limit)
	}
}

func TestMinSeeds(t *testing.T) {
	t.Parallel()
	w, _ := WorkloadByName("W4")
	w = tiny(w)
	w.MinSeeds = 3
	rr, _ := Builtin(PolicyRoundRobin)
	rep, err := (&Matrix{Workloads: []Workload{w}, Policies: []Policy{rr}, Seeds: []uint64{5}}).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := rep.Workloads[0].Policies[0].PerSeedThroughput[0]; len(got) != 3 || rep.Workloads[0].Seeds != 3 {
		t.Errorf("per-seed throughput %v, seeds %d: want 3 seeds (5, 6, 7)", got, rep.Workloads[0].Seeds)
	}
}
