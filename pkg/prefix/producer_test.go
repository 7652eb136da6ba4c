package prefix

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
)

func TestDecodeParams(t *testing.T) {
	t.Parallel()
	def := DefaultParams()
	with := func(f func(*Params)) Params { p := DefaultParams(); f(&p); return p }
	tests := []struct {
		name    string
		raw     string
		want    Params
		wantErr []string // substrings, all required
	}{
		{name: "nil is defaults", raw: "", want: def},
		{name: "null is defaults", raw: "null", want: def},
		{name: "empty object is defaults", raw: "{}", want: def},
		{name: "all set", raw: `{"autoTune":false,"blockSizeTokens":32,"maxPrefixBlocksToMatch":64,"maxPrefixTokensToMatch":1024,"lruCapacityPerServer":100}`,
			want: Params{BlockSizeTokens: 32, MaxPrefixBlocksToMatch: 64, MaxPrefixTokensToMatch: 1024, LRUCapacityPerServer: 100}},
		{name: "deprecated blockSize in characters", raw: `{"blockSize":128}`, want: with(func(p *Params) { p.BlockSize, p.BlockSizeTokens = 128, 32 })},
		{name: "deprecated blockSize rounds", raw: `{"blockSize":10}`, want: with(func(p *Params) { p.BlockSize, p.BlockSizeTokens = 10, 3 })},
		{name: "deprecated blockSize at least one token", raw: `{"blockSize":1}`, want: with(func(p *Params) { p.BlockSize, p.BlockSizeTokens = 1, 1 })},
		{name: "scorer parameters accepted and ignored", raw: `{"prefixMatchInfoProducerName":"x","matchLengthWeight":0.5,"matchLengthScaleTokens":100,"blockSizeTokens":8}`,
			want: with(func(p *Params) { p.BlockSizeTokens = 8 })},
		{name: "both block sizes", raw: `{"blockSize":64,"blockSizeTokens":16}`, wantErr: []string{"blockSize", "conflicts"}},
		{name: "unknown field", raw: `{"blockSizeToken":16}`, wantErr: []string{"unknown field", "blockSizeToken"}},
		{name: "wrong type", raw: `{"autoTune":"yes"}`, wantErr: []string{"autoTune"}},
		{name: "not an object", raw: `[1]`, wantErr: []string{"parameters"}},
		{name: "zero block size", raw: `{"blockSizeTokens":0}`, wantErr: []string{"blockSizeTokens: must be in [1, 65536], got 0"}},
		{name: "every bad value reported at once", raw: `{"maxPrefixBlocksToMatch":0,"maxPrefixTokensToMatch":-1,"lruCapacityPerServer":0}`,
			wantErr: []string{"maxPrefixBlocksToMatch: must be >= 1", "maxPrefixTokensToMatch: must be >= 0", "lruCapacityPerServer: must be in"}},
		{name: "negative deprecated block size", raw: `{"blockSize":-4}`, wantErr: []string{"blockSize: must be >= 0"}},
		{name: "huge block size", raw: `{"blockSizeTokens":100000000}`, wantErr: []string{"blockSizeTokens"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := DecodeParams([]byte(tc.raw), nil)
			if !errorMentions(t, err, tc.wantErr) || err != nil {
				return
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("params (-want +got):\n%s", diff)
			}
		})
	}
}

// errorMentions reports whether err is as expected: nil when want is
// empty, else an error containing every string of want.
func errorMentions(t *testing.T, err error, want []string) bool {
	t.Helper()
	switch {
	case len(want) == 0 && err != nil:
		t.Errorf("unexpected error: %v", err)
		return false
	case len(want) > 0 && err == nil:
		t.Errorf("no error, want one mentioning %q", want)
		return false
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	return true
}

// TestParamsDocumented: every parameter has json, doc and default tags, and
// the documented defaults decode to DefaultParams.
func TestParamsDocumented(t *testing.T) {
	t.Parallel()
	typ := reflect.TypeFor[Params]()
	var parts []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		def, hasDefault := f.Tag.Lookup("default")
		if f.Tag.Get("json") == "" || f.Tag.Get("doc") == "" || !hasDefault {
			t.Errorf("Params.%s: json, doc and default tags required", f.Name)
		}
		if def != "" {
			parts = append(parts, fmt.Sprintf("%q:%s", strings.Split(f.Tag.Get("json"), ",")[0], def))
		}
	}
	got, err := DecodeParams([]byte("{"+strings.Join(parts, ",")+"}"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(DefaultParams(), got); diff != "" {
		t.Errorf("documented defaults (-DefaultParams +decoded):\n%s", diff)
	}
}

func TestProducerFactory(t *testing.T) {
	t.Parallel()
	p, err := ProducerFactory("prefix", []byte(`{"blockSizeTokens":2}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.TypedName(); got != (scheduler.TypedName{Type: ProducerType, Name: "prefix"}) {
		t.Errorf("TypedName = %v", got)
	}
	if _, err := ProducerFactory("prefix", []byte(`{"lruCapacityPerServer":-1}`), nil); err == nil {
		t.Error("bad parameters accepted")
	}
	if _, err := NewProducer("p", Params{}, nil); err == nil {
		t.Error("NewProducer accepted zero Params")
	}
	reg := ProducerRegistration()
	if reg.Type != ProducerType || reg.Factory == nil || reg.Params == nil {
		t.Errorf("registration incomplete: %+v", reg)
	}
}

// req returns a chat request for model whose prompt is the given text.
func req(model, salt, text string) *scheduler.Request {
	prompt := []byte(`[{"role":"user","content":"` + text + `"}]`)
	return &scheduler.Request{ID: "r", Model: model, Body: &request.Body{API: request.ChatCompletions, Model: model, CacheSalt: salt, Prompt: prompt, Raw: prompt}}
}

// text returns n bytes of prompt text identified by id.
func text(id string, n int) string {
	return strings.Repeat(id+" lorem ipsum dolor sit amet ", n/(len(id)+27)+1)[:n]
}

func newProducer(t *testing.T, p Params, h *scheduler.Handle) *Producer {
	t.Helper()
	pr, err := NewProducer(ProducerType, p, h)
	if err != nil {
		t.Fatal(err)
	}
	return pr
}

func result(primary []*endpoint.Endpoint, prefill *endpoint.Endpoint) *scheduler.Result {
	r := &scheduler.Result{Primary: "decode", Profiles: map[string]*scheduler.ProfileResult{"decode": {Targets: primary}}}
	if prefill != nil {
		r.Profiles[PrefillProfile] = &scheduler.ProfileResult{Targets: []*endpoint.Endpoint{prefill}}
	}
	return r
}

// route runs Produce then PreRequest as the scheduler would, returning the
// match Produce saw.
func route(pr *Producer, eps []*endpoint.Endpoint, r *scheduler.Request, res *scheduler.Result) *Match {
	st := scheduler.NewState(1, time.Time{})
	pr.Produce(context.Background(), st, r, eps)
	m, _ := pr.Match(st)
	if res != nil {
		pr.PreRequest(context.Background(), st, r, res)
	}
	return m
}

func TestProducerRecordsPrimaryAndPrefill(t *testing.T) {
	t.Parallel()
	pr := newProducer(t, Params{BlockSizeTokens: 4, MaxPrefixBlocksToMatch: 256, LRUCapacityPerServer: 1000}, nil)
	eps := newEndpoints(4)
	prompt := text("a", 640) // ~40 blocks of 16 bytes with the JSON around it
	first := route(pr, eps, req("m", "", prompt), result(eps[:2], eps[2]))
	if first.Any() || first.TotalBlocks == 0 {
		t.Fatalf("cold index: %d blocks, any=%v", first.TotalBlocks, first.Any())
	}
	second := route(pr, eps, req("m", "", prompt), nil)
	total := second.TotalBlocks
	// Primary (eps[0]) and prefill (eps[2]) hold it all; the fallback
	// (eps[1]) serves only if the primary fails, so it is not recorded.
	if diff := cmp.Diff([]int{total, 0, total, 0}, blocksOf(second, eps)); diff != "" {
		t.Errorf("blocks (-want +got):\n%s", diff)
	}
	// A longer prompt with the same start matches the shared blocks only.
	longer := route(pr, eps, req("m", "", prompt+text("b", 320)), nil)
	if got := longer.Blocks(eps[0]); got < total-1 || got > total || longer.TotalBlocks <= total {
		t.Errorf("extended prompt: %d of %d blocks matched, want about %d", got, longer.TotalBlocks, total)
	}
	for _, other := range []*scheduler.Request{req("other-model", "", prompt), req("m", "salt", prompt)} {
		if m := route(pr, eps, other, nil); m.Any() {
			t.Errorf("model %q salt %q matched another model's or salt's entries", other.Model, other.Body.CacheSalt)
		}
	}
}

// TestProducerHashesTools: with hashTools, tools count where the template
// renders them. A request with other tools matches a server's blocks up to
// there (the system prompt) and nothing after; the same tools match in
// full. Under upstream-compatible scoring tools are ignored, as GIE ignores
// them, and so they are by default (TestProducerIgnoresToolsByDefault).
func TestProducerHashesTools(t *testing.T) {
	t.Parallel()
	const at = 320 // bytes of system prompt before the tools: 20 blocks of 16
	withTools := func(tools string) *scheduler.Request {
		r := req("m", "", text("agent", 640))
		r.Body.Tools, r.Body.ToolsAt = []byte(tools), at
		return r
	}
	for _, upstream := range []bool{false, true} {
		pr := newProducer(t, Params{BlockSizeTokens: 4, MaxPrefixBlocksToMatch: 256, LRUCapacityPerServer: 1000, HashTools: true},
			&scheduler.Handle{Log: logr.Discard(), UpstreamScoring: upstream})
		eps := newEndpoints(2)
		route(pr, eps, withTools(`[{"name":"bash"}]`), result(eps[:1], nil))
		same := route(pr, eps, withTools(`[{"name":"bash"}]`), nil)
		other := route(pr, eps, withTools(`[{"name":"edit"}]`), nil)
		if got := same.Blocks(eps[0]); got != same.TotalBlocks || got == 0 {
			t.Errorf("upstream=%v: same tools matched %d of %d blocks", upstream, got, same.TotalBlocks)
		}
		if got, want := other.Blocks(eps[0]), map[bool]int{false: at / 16, true: other.TotalBlocks}[upstream]; got != want {
			t.Errorf("upstream=%v: other tools matched %d blocks, want %d", upstream, got, want)
		}
	}
}

// TestProducerIgnoresToolsByDefault: without hashTools a request with other
// tools matches in full, as in GIE.
func TestProducerIgnoresToolsByDefault(t *testing.T) {
	t.Parallel()
	pr := newProducer(t, Params{BlockSizeTokens: 4, MaxPrefixBlocksToMatch: 256, LRUCapacityPerServer: 1000}, nil)
	eps := newEndpoints(1)
	withTools := func(tools string) *scheduler.Request {
		r := req("m", "", text("agent", 640))
		r.Body.Tools, r.Body.ToolsAt = []byte(tools), 320
		return r
	}
	route(pr, eps, withTools(`[{"name":"bash"}]`), result(eps, nil))
	if m := route(pr, eps, withTools(`[{"name":"edit"}]`), nil); m.Blocks(eps[0]) != m.TotalBlocks {
		t.Errorf("other tools matched %d of %d blocks, want all: tools are not hashed by default", m.Blocks(eps[0]), m.TotalBlocks)
	}
}

// TestProducerRecordsNamedPrefillProfile: a handler naming its prefill
// profile otherwise than GIE's "prefill" still gets its pick recorded.
func TestProducerRecordsNamedPrefillProfile(t *testing.T) {
	t.Parallel()
	pr := newProducer(t, Params{BlockSizeTokens: 4, MaxPrefixBlocksToMatch: 256, LRUCapacityPerServer: 1000}, nil)
	eps := newEndpoints(3)
	prompt := text("a", 640)
	res := &scheduler.Result{Primary: "decode", PrefillProfile: "pf", Profiles: map[string]*scheduler.ProfileResult{
		"decode": {Targets: eps[:1]}, "pf": {Targets: eps[2:3]}}}
	route(pr, eps, req("m", "", prompt), res)
	m := route(pr, eps, req("m", "", prompt), nil)
	if diff := cmp.Diff([]int{m.TotalBlocks, 0, m.TotalBlocks}, blocksOf(m, eps)); diff != "" {
		t.Errorf("blocks (-want +got):\n%s", diff)
	}
}

// TestProducerRecordsServedFallback checks the correction for fallbacks:
// when the proxy reports that the second target served, it holds the
// prompt's blocks too; a report naming the primary, an unknown endpoint or
// nothing changes nothing.
func TestProducerRecordsServedFallback(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(4)
	prompt := text("a", 640)
	for _, tc := range []struct {
		served string
		want   []bool // holds the blocks, per endpoint
	}{
		{served: " " + eps[1].HostPort + " ", want: []bool{true, true, false, false}},
		{served: eps[0].HostPort, want: []bool{true, false, false, false}},
		{served: eps[3].HostPort, want: []bool{true, false, false, false}}, // not a target
		{served: "", want: []bool{true, false, false, false}},
	} {
		pr := newProducer(t, Params{BlockSizeTokens: 4, MaxPrefixBlocksToMatch: 256, LRUCapacityPerServer: 1000}, nil)
		st := scheduler.NewState(1, time.Time{})
		r := req("m", "", prompt)
		pr.Produce(context.Background(), st, r, eps)
		pr.PreRequest(context.Background(), st, r, result(eps[:3], nil))
		pr.ResponseHeaders(context.Background(), st, r, &scheduler.Response{StatusCode: 200, Served: tc.served})
		m := route(pr, eps, req("m", "", prompt), nil)
		got := make([]bool, len(eps))
		for i, e := range eps {
			got[i] = m.Blocks(e) == m.TotalBlocks
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("served %q: endpoints holding the prompt (-want +got):\n%s", tc.served, diff)
		}
	}
}

func TestProducerBadInput(t *testing.T) {
	t.Parallel()
	pr := newProducer(t, DefaultParams(), nil)
	eps := newEndpoints(2)
	tests := []struct {
		name string
		req  *scheduler.Request
	}{
		{name: "no body", req: &scheduler.Request{Model: "m"}},
		{name: "empty prompt", req: &scheduler.Request{Model: "m", Body: &request.Body{}}},
		{name: "prompt shorter than a block", req: req("m", "", "hi")},
	}
	for _, tc := range tests {
		st := scheduler.NewState(1, time.Time{})
		pr.Produce(context.Background(), st, tc.req, eps)
		m, ok := pr.Match(st)
		if !ok || m.TotalBlocks != 0 || m.Any() {
			t.Errorf("%s: match %+v ok=%v, want an empty match", tc.name, m, ok)
		}
		pr.PreRequest(context.Background(), st, tc.req, result(eps[:1], nil))
		pr.PreRequest(context.Background(), st, tc.req, nil)
	}
	// PreRequest without Produce, or with an empty result, records nothing.
	pr.PreRequest(context.Background(), scheduler.NewState(1, time.Time{}), req("m", "", text("a", 500)), result(eps, nil))
	st := scheduler.NewState(1, time.Time{})
	pr.Produce(context.Background(), st, req("m", "", text("a", 500)), eps)
	pr.PreRequest(context.Background(), st, nil, &scheduler.Result{})
	if pr.Index().Len() != 0 {
		t.Errorf("index has %d entries, want 0", pr.Index().Len())
	}
	if _, ok := pr.Match(scheduler.NewState(1, time.Time{})); ok {
		t.Error("Match without Produce reported a match")
	}
}

func TestMaxPrefixCaps(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		params Params
		want   int
	}{
		{name: "blocks cap", params: Params{BlockSizeTokens: 16, MaxPrefixBlocksToMatch: 10, LRUCapacityPerServer: 10}, want: 10},
		{name: "tokens cap", params: Params{BlockSizeTokens: 16, MaxPrefixBlocksToMatch: 256, MaxPrefixTokensToMatch: 160, LRUCapacityPerServer: 10}, want: 10},
		{name: "tokens cap below a block still hashes one", params: Params{BlockSizeTokens: 16, MaxPrefixBlocksToMatch: 256, MaxPrefixTokensToMatch: 5, LRUCapacityPerServer: 10}, want: 1},
		{name: "prompt length", params: Params{BlockSizeTokens: 16, MaxPrefixBlocksToMatch: 256, LRUCapacityPerServer: 10}, want: 64},
	}
	for _, tc := range tests {
		pr := newProducer(t, tc.params, nil)
		if m := route(pr, newEndpoints(1), req("m", "", text("a", 64*64-30)), nil); m.TotalBlocks != tc.want {
			t.Errorf("%s: %d blocks, want %d", tc.name, m.TotalBlocks, tc.want)
		}
	}
}

func TestAutoTune(t *testing.T) {
	t.Parallel()
	withCache := func(blockSize, blocks int) *endpoint.Endpoint {
		e := newEndpoints(1)[0]
		e.SetMetrics(&endpoint.Metrics{CacheBlockSize: blockSize, CacheNumBlocks: blocks})
		return e
	}
	tests := []struct {
		name         string
		autoTune     bool
		eps          []*endpoint.Endpoint
		wantBS       int
		wantCapacity int // of eps[0]
	}{
		{name: "all agree", autoTune: true, eps: []*endpoint.Endpoint{withCache(32, 1000), withCache(32, 50)}, wantBS: 32, wantCapacity: 1000},
		{name: "unreported ignored", autoTune: true, eps: []*endpoint.Endpoint{withCache(32, 1000), withCache(0, 0)}, wantBS: 32, wantCapacity: 1000},
		{name: "disagreement falls back", autoTune: true, eps: []*endpoint.Endpoint{withCache(32, 1000), withCache(16, 10)}, wantBS: 8, wantCapacity: 4000},
		{name: "nothing reported", autoTune: true, eps: []*endpoint.Endpoint{withCache(0, 0)}, wantBS: 8, wantCapacity: 777},
		{name: "absurd capacity capped", autoTune: true, eps: []*endpoint.Endpoint{withCache(16, 1<<30)}, wantBS: 16, wantCapacity: maxAutoTunedCapacity},
		{name: "absurd block size ignored", autoTune: true, eps: []*endpoint.Endpoint{withCache(1<<20, 1)}, wantBS: 8, wantCapacity: 1 << 17},
		{name: "one-token pages ignored", autoTune: true, eps: []*endpoint.Endpoint{withCache(1, 500000)}, wantBS: 8, wantCapacity: 62500},
		{name: "overflowing cache size capped", autoTune: true, eps: []*endpoint.Endpoint{withCache(1<<40, 1<<40)}, wantBS: 8, wantCapacity: maxAutoTunedCapacity},
		{name: "off", autoTune: false, eps: []*endpoint.Endpoint{withCache(32, 1000)}, wantBS: 8, wantCapacity: 777},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pr := newProducer(t, Params{AutoTune: tc.autoTune, BlockSizeTokens: 8, MaxPrefixBlocksToMatch: 256, LRUCapacityPerServer: 777}, nil)
			bs := pr.blockSizeTokens(tc.eps)
			if bs != tc.wantBS {
				t.Errorf("block size %d, want %d", bs, tc.wantBS)
			}
			if got := pr.capacity(tc.eps[0], bs); got != tc.wantCapacity {
				t.Errorf("capacity %d, want %d", got, tc.wantCapacity)
			}
			if m := route(pr, tc.eps, req("m", "", text("a", 2000)), nil); m.BlockSizeTokens != tc.wantBS {
				t.Errorf("match block size %d, want %d", m.BlockSizeTokens, tc.wantBS)
			}
		})
	}
}

func TestTwoProducersKeepSeparateMatches(t *testing.T) {
	t.Parallel()
	a := newProducer(t, Params{BlockSizeTokens: 4, MaxPrefixBlocksToMatch: 256, LRUCapacityPerServer: 100}, nil)
	b := newProducer(t, Params{BlockSizeTokens: 8, MaxPrefixBlocksToMatch: 256, LRUCapacityPerServer: 100}, nil)
	st := scheduler.NewState(1, time.Time{})
	r := req("m", "", text("a", 400))
	a.Produce(context.Background(), st, r, nil)
	b.Produce(context.Background(), st, r, nil)
	a.Produce(context.Background(), st, r, nil) // a second Produce replaces the first
	ma, _ := a.Match(st)
	mb, _ := b.Match(st)
	if ma.BlockSizeTokens != 4 || mb.BlockSizeTokens != 8 || ma.TotalBlocks != 2*mb.TotalBlocks {
		t.Errorf("matches mixed up: a %+v, b %+v", ma, mb)
	}
}

func TestStartPurgesDepartedEndpoints(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(3)
	pool := make(chan []*endpoint.Endpoint, 1)
	pool <- eps
	current := func() []*endpoint.Endpoint { p := <-pool; pool <- p; return p }
	pr := newProducer(t, Params{BlockSizeTokens: 4, MaxPrefixBlocksToMatch: 256, LRUCapacityPerServer: 100}, &scheduler.Handle{Endpoints: current})
	pr.purgeEvery = 5 * time.Millisecond
	for _, e := range eps {
		route(pr, eps, req("m", "", text("a", 300)), result([]*endpoint.Endpoint{e}, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pr.Start(ctx) }()
	<-pool
	pool <- eps[:1]
	deadline := time.Now().Add(5 * time.Second)
	for pr.Index().Endpoints() != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Start returned %v", err)
	}
	if got := pr.Index().Endpoints(); got != 1 {
		t.Errorf("%d endpoints tracked after the pool shrank to 1", got)
	}
	<-pool
	pool <- nil
	if n := pr.Purge(); n != 0 || pr.Index().Endpoints() != 1 {
		t.Errorf("an empty pool purged %d endpoints", n)
	}
}

func TestStartWithoutEndpointSource(t *testing.T) {
	t.Parallel()
	pr := newProducer(t, DefaultParams(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := pr.Start(ctx); err != nil || pr.Purge() != 0 {
		t.Errorf("Start = %v", err)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	h := &scheduler.Handle{Registerer: reg}
	params := Params{BlockSizeTokens: 4, MaxPrefixBlocksToMatch: 256, LRUCapacityPerServer: 100}
	a, err := NewProducer("a", params, h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewProducer("b", params, h); err != nil {
		t.Fatalf("second instance: %v", err)
	}
	eps := newEndpoints(2)
	route(a, eps, req("m", "", text("a", 300)), result(eps[:1], nil))
	route(a, eps, req("m", "", text("a", 300)), nil)
	// A reload builds a new instance of the same name before the old goes.
	a2, err := NewProducer("a", params, h)
	if err != nil {
		t.Fatalf("same-name instance: %v", err)
	}
	route(a2, eps, req("m", "", text("a", 300)), nil)
	want := `
# HELP inference_extension_prefix_indexer_size Entries ((endpoint, prompt block) pairs) in the approximate prefix-cache index.
# TYPE inference_extension_prefix_indexer_size gauge
inference_extension_prefix_indexer_size{plugin="a"} 0
inference_extension_prefix_indexer_size{plugin="b"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), metricIndexSize); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, metricHitRatio); n != 2 {
		t.Errorf("%d hit-ratio series, want 2", n)
	}
	got, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	// The second request of a matched its whole prompt: every full block of
	// 16 bytes of the prompt's JSON, the text plus the chat framing around it.
	matched := float64(len(req("m", "", text("a", 300)).Body.Prompt) / 16 * 16)
	for _, mf := range got {
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() != "a" {
				continue
			}
			n, sum := m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
			switch mf.GetName() {
			case metricHitRatio:
				if n != 3 || sum != 1 {
					t.Errorf("hit ratio of a: count %d sum %v, want 3 and 1 (0, 1, 0)", n, sum)
				}
			case metricHitBytes:
				if n != 3 || sum != matched {
					t.Errorf("hit bytes of a: count %d sum %v, want 3 and %v (0, all, 0)", n, sum, matched)
				}
			}
		}
	}
}

// TestProducerMatchesTokenInPrompts: a vLLM generate prompt is hashed as
// its token IDs, blockSizeTokens to a block, so two rollouts sharing their
// first 40 tokens share exactly 10 blocks of 4 whatever their spacing.
func TestProducerMatchesTokenInPrompts(t *testing.T) {
	t.Parallel()
	pr := newProducer(t, Params{BlockSizeTokens: 4, MaxPrefixBlocksToMatch: 256, LRUCapacityPerServer: 1000}, nil)
	eps := newEndpoints(2)
	generate := func(ids []int, sep string) *scheduler.Request {
		var b strings.Builder
		b.WriteString(`{"model":"m","token_ids":[`)
		for i, id := range ids {
			if i > 0 {
				b.WriteString("," + sep)
			}
			fmt.Fprint(&b, id)
		}
		b.WriteString("]}")
		body, err := request.Parse(request.Generate, []byte(b.String()))
		if err != nil {
			t.Fatal(err)
		}
		return &scheduler.Request{ID: "r", Model: "m", Body: body}
	}
	shared := make([]int, 40)
	for i := range shared {
		shared[i] = 7 * i
	}
	first := route(pr, eps, generate(append(shared, 1, 2, 3, 4, 5, 6), ""), result(eps[:1], nil))
	if first.TotalBlocks != 11 {
		t.Fatalf("46 tokens in blocks of 4: %d blocks, want 11", first.TotalBlocks)
	}
	second := route(pr, eps, generate(append(shared, 9, 9, 9, 9), " "), nil)
	if got := second.Blocks(eps[0]); got != 10 || second.TotalBlocks != 11 {
		t.Errorf("second rollout matched %d of %d blocks, want 10 of 11", got, second.TotalBlocks)
	}
}
