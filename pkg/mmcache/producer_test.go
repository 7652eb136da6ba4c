package mmcache

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

var ctx = context.Background()

// route runs req through p as the scheduler does, sends it to target
// (and prefill), and returns the match Produce found.
func route(p *Producer, req *scheduler.Request, pool []*endpoint.Endpoint, target, prefill *endpoint.Endpoint) *Match {
	state := plugintest.State(1)
	p.Produce(ctx, state, req, pool)
	m, _ := p.Match(state)
	p.PreRequest(ctx, state, req, resultTo(target, prefill))
	return m
}

func TestMatchIsTheShareOfItemsHeld(t *testing.T) {
	t.Parallel()
	pool := eps(3)
	p := newProducer(t, "", poolOf(pool))
	a, b, c := imagePart("https://x/a.png"), imagePart("https://x/b.png"), imagePart("https://x/c.png")
	if m := route(p, chatWith(t, "first", a, b), pool, pool[0], nil); m.Items != 2 || m.Fraction(pool[0]) != 0 {
		t.Fatalf("cold request: %d items, fraction %v; want 2 and 0", m.Items, m.Fraction(pool[0]))
	}
	route(p, chatWith(t, "second", c), pool, pool[1], nil)
	// a and b went to s0, c to s1; a request for a, c and a again has two
	// distinct items (a counts once), one held by each.
	m := route(p, chatWith(t, "third", a, c, a), pool, pool[2], nil)
	if m.Items != 2 {
		t.Fatalf("%d items, want 2 (a repeated counts once)", m.Items)
	}
	for i, want := range []float64{0.5, 0.5, 0} {
		if got := m.Fraction(pool[i]); got != want {
			t.Errorf("%s: fraction %v, want %v", pool[i].Name, got, want)
		}
	}
	// The third request's items are now s2's too.
	if m := route(p, chatWith(t, "fourth", a, c), pool, pool[2], nil); m.Fraction(pool[2]) != 1 {
		t.Errorf("s2 after being sent a and c: fraction %v, want 1", m.Fraction(pool[2]))
	}
	// A text-only request leaves no record: every endpoint scores 0.
	state := plugintest.State(1)
	p.Produce(ctx, state, chatWith(t, "text only"), pool)
	if _, ok := p.Match(state); ok {
		t.Error("a request without items left a match")
	}
	p.PreRequest(ctx, state, chatWith(t, "text only"), resultTo(pool[0], nil))
	p.Produce(ctx, state, nil, pool)
}

func TestPreRequestRecordsPrimaryAndPrefill(t *testing.T) {
	t.Parallel()
	pool := eps(4)
	p := newProducer(t, `{"cacheSizeInMBPerServer": 1}`, poolOf(pool))
	img := imagePart("data:image/png;base64," + b64)
	route(p, chatWith(t, "pd", img), pool, pool[0], pool[1])
	m := route(p, chatWith(t, "again", img), pool, pool[3], nil)
	for i, want := range []float64{1, 1, 0, 0} {
		if got := m.Fraction(pool[i]); got != want {
			t.Errorf("%s: fraction %v, want %v (decode and prefill targets of the first request hold it)", pool[i].Name, got, want)
		}
	}
	// A result naming the primary as its prefill target records it once.
	same := &scheduler.Result{Primary: "decode", Profiles: map[string]*scheduler.ProfileResult{
		"decode": {Targets: []*endpoint.Endpoint{pool[2]}}, "prefill": {Targets: []*endpoint.Endpoint{pool[2]}},
	}}
	state := plugintest.State(1)
	p.Produce(ctx, state, chatWith(t, "third", imagePart("https://x/new.png")), pool)
	p.PreRequest(ctx, state, nil, same)
	p.PreRequest(ctx, state, nil, nil)
	if got := p.store.get(pool[2].HostPort).order(); len(got) != 1 {
		t.Errorf("s2 holds %d items, want 1", len(got))
	}
}

func TestInheritKeepsTheLRUs(t *testing.T) {
	t.Parallel()
	pool := eps(2)
	old := newProducer(t, "", poolOf(pool))
	img := imagePart("https://x/a.png")
	route(old, chatWith(t, "before", img), pool, pool[1], nil)
	reloaded := newProducer(t, `{"cacheSizeInMBPerServer": 16}`, poolOf(pool))
	reloaded.Inherit(old)
	reloaded.Inherit(NewScorer("s", ScorerParams{}, nil)) // not a producer: ignored
	if m := route(reloaded, chatWith(t, "after", img), pool, pool[0], nil); m.Fraction(pool[1]) != 1 {
		t.Errorf("after a reload s1's fraction is %v, want 1", m.Fraction(pool[1]))
	}
	if c := reloaded.store.get(pool[0].HostPort); c == nil || c.capacity != 16*16384 {
		t.Error("the reloaded producer's budget does not apply to its records")
	}
}

func TestProducerParams(t *testing.T) {
	t.Parallel()
	tests := []struct{ params, wantErr string }{
		{"", ""},
		{`{}`, ""},
		{`{"cacheSizeInMBPerServer": 64}`, ""},
		{`{"cacheSizeInMBPerServer": 0}`, "cacheSizeInMBPerServer: must be in [1, 1048576]"},
		{`{"cacheSizeInMBPerServer": -5}`, "cacheSizeInMBPerServer: must be in [1, 1048576] (MiB of the EPP's memory per endpoint), got -5"},
		{`{"cacheSizeInMBPerServer": 2000000}`, "got 2000000"},
		{`{"cacheSizeInMBPerServer": "big"}`, "parameters: json: cannot unmarshal string"},
		{`{"cacheSizeInMBPerServer": 1.5}`, "parameters: json: cannot unmarshal number 1.5"},
		{`{"cacheSize": 64}`, `parameters: json: unknown field "cacheSize"`},
	}
	for _, tc := range tests {
		pl, err := ProducerFactory("mm", json.RawMessage(tc.params), nil)
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.params, err)
			} else if pl.TypedName() != (scheduler.TypedName{Type: ProducerType, Name: "mm"}) {
				t.Errorf("%s: named %v", tc.params, pl.TypedName())
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: error %v, want one containing %q", tc.params, err, tc.wantErr)
		}
	}
}

func TestDumpState(t *testing.T) {
	t.Parallel()
	pool := eps(3)
	p := newProducer(t, `{"cacheSizeInMBPerServer": 1}`, poolOf(pool[:2]))
	route(p, chatWith(t, "a", imagePart("https://x/a.png"), imagePart("https://x/b.png")), pool, pool[0], nil)
	route(p, chatWith(t, "b", imagePart("https://x/c.png")), pool, pool[2], nil) // s2 has left the pool since
	got := plugintest.Dumped(t, p)
	want := map[string]any{
		"cacheSizeInMBPerServer": 1.0, "capacityItemsPerServer": 16384.0, "bytesPerItem": 64.0,
		"items": 3.0, "endpointCount": 2.0, "moreEndpoints": 0.0,
		"endpoints": map[string]any{
			"s0":            map[string]any{"items": 2.0, "capacityItems": 16384.0},
			"10.0.0.3:8000": map[string]any{"items": 1.0, "capacityItems": 16384.0},
		},
	}
	gotJSON, _ := json.Marshal(got)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("state\n%s\nwant\n%s", gotJSON, wantJSON)
	}
	if n := p.Purge(); n != 1 {
		t.Errorf("purged %d endpoints, want 1 (s2)", n)
	}
	// Dumping while requests record is safe (-race).
	reqs := make([]*scheduler.Request, 7)
	for i := range reqs {
		reqs[i] = chatWith(t, "x", imagePart("https://x/"+strings.Repeat("i", i)+".png"))
	}
	plugintest.DumpWhile(func() {
		for i := range 200 {
			route(p, reqs[i%len(reqs)], pool, pool[i%2], nil)
		}
	}, func() { _ = p.DumpState() })
}

func TestConcurrentRouting(t *testing.T) {
	t.Parallel()
	pool := eps(8)
	p := newProducer(t, `{"cacheSizeInMBPerServer": 1}`, poolOf(pool))
	reqs := make([]*scheduler.Request, 13)
	for i := range reqs {
		reqs[i] = chatWith(t, "x", imagePart("https://x/"+strings.Repeat("i", i)+".png"))
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				route(p, reqs[(g+i)%len(reqs)], pool, pool[(g+i)%len(pool)], pool[g])
			}
		}()
	}
	wg.Wait()
}
