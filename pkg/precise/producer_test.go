package precise

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/kvevents"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/sim"
)

// pool is a test pool the producer's handle reads.
type pool struct {
	mu  sync.Mutex
	eps []*endpoint.Endpoint
}

func (p *pool) get() []*endpoint.Endpoint {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*endpoint.Endpoint(nil), p.eps...)
}

func (p *pool) set(eps ...*endpoint.Endpoint) {
	p.mu.Lock()
	p.eps = eps
	p.mu.Unlock()
}

// startProducer builds a token-producer (tokenizing on the pool) and a
// precise producer with params, and runs the latter until the test ends.
func startProducer(t *testing.T, params string, pl *pool, reg prometheus.Registerer) *Producer {
	t.Helper()
	h := &scheduler.Handle{Log: logr.Discard(), Registerer: reg, Endpoints: pl.get}
	tp, err := TokenProducerFactory(TokenProducerType, json.RawMessage(`{"backend":"vllm","vllm":{"endpointDiscovery":{}}}`), h)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ProducerFactory(ProducerType, json.RawMessage(params), h)
	if err != nil {
		t.Fatal(err)
	}
	pr := p.(*Producer)
	lookup := h.WithLookup(func(name string) (scheduler.Plugin, bool) { return tp, name == TokenProducerType })
	if err := pr.Resolve(lookup); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start: %v", err)
		}
	})
	return pr
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// chat sends a chat completion to a simulated server.
func chat(t *testing.T, base string, req *scheduler.Request) {
	t.Helper()
	resp, err := http.Post(base+"/v1/chat/completions", "application/json", bytes.NewReader(req.Body.Raw))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("chat: status %d", resp.StatusCode)
	}
}

func words(prefix string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%s%d ", prefix, i)
	}
	return b.String()
}

// TestProducerFollowsServersOverZeroMQ runs the whole path: two simulated
// vLLMs publish KV events to the producer's socket; the one that served a
// long system prompt is matched for a new question under it, the other is
// not; flooding it with other prompts evicts the prefix, and the match
// goes away with it.
func TestProducerFollowsServersOverZeroMQ(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	pl := &pool{}
	p := startProducer(t, `{"kvEventsConfig":{"zmqEndpoint":"tcp://127.0.0.1:0"}}`, pl, reg)
	eventually(t, "the events socket", func() bool { return p.EventsAddr() != "" })
	a, epA := startSim(t, p.EventsAddr())
	_, epB := startSim(t, p.EventsAddr())
	pl.set(epA, epB)

	// A new system prompt each attempt, as events sent before the
	// connection is up are lost (TestProducerMatchesOnlyItsSalt).
	var system string
	attempt := 0
	eventually(t, "a's blocks in the index", func() bool {
		attempt++
		system = words(fmt.Sprintf("rule%d", attempt), 300)
		chat(t, a.URL(), chatRequest(t, a.Model(), system, "first question"))
		return p.index.Blocks(epA.HostPort) > 0
	})

	match := func() (int, int, int) {
		st := state()
		req := chatRequest(t, a.Model(), system, "a different question")
		p.Produce(context.Background(), st, req, []*endpoint.Endpoint{epA, epB})
		m, ok := p.Match(st)
		if !ok {
			t.Fatal("no match recorded")
		}
		return m.Blocks(epA), m.Blocks(epB), m.TotalBlocks
	}
	eventually(t, "the last attempt's blocks in the index", func() bool { gotA, _, total := match(); return gotA >= total-2 })
	gotA, gotB, total := match()
	if gotA < total-2 || gotB != 0 {
		t.Fatalf("matched a=%d b=%d of %d blocks; want a to hold all but the question's, b none", gotA, gotB, total)
	}
	if m := p.metrics; testutil.ToFloat64(m.subs) != 1 || testutil.ToFloat64(m.events.WithLabelValues(ProducerType, "stored")) == 0 {
		t.Error("subscription or stored-block metrics not set")
	}

	// 512 blocks of 16 tokens: enough other long prompts evict the prefix.
	for i := range 12 {
		chat(t, a.URL(), chatRequest(t, a.Model(), words(fmt.Sprintf("other%d-", i), 300), "q"))
	}
	eventually(t, "the evictions", func() bool { gotA, _, _ := match(); return gotA == 0 })
	if testutil.ToFloat64(p.metrics.events.WithLabelValues(ProducerType, "removed")) == 0 {
		t.Error("no removed blocks counted")
	}
}

// TestProducerMatchesOnlyItsSalt: a simulated vLLM serves a system
// prompt under a cache_salt and publishes the salt in the blocks'
// extra_keys; a request of the same salt matches them, one of another
// salt or none does not, as the engine would not reuse them.
func TestProducerMatchesOnlyItsSalt(t *testing.T) {
	t.Parallel()
	pl := &pool{}
	p := startProducer(t, `{"kvEventsConfig":{"zmqEndpoint":"tcp://127.0.0.1:0"}}`, pl, prometheus.NewRegistry())
	eventually(t, "the events socket", func() bool { return p.EventsAddr() != "" })
	a, epA := startSim(t, p.EventsAddr())
	pl.set(epA)
	// A publisher's first events are lost until its connection is up, and
	// a prompt the server has cached stores nothing again: each attempt
	// sends a new system prompt until one is indexed.
	var system string
	attempt := 0
	eventually(t, "a's salted blocks in the index", func() bool {
		attempt++
		system = words(fmt.Sprintf("tenant%d rule", attempt), 300)
		chat(t, a.URL(), saltedChatRequest(t, a.Model(), "tenant-1", system, "first question"))
		return p.index.Blocks(epA.HostPort) > 0
	})
	held := func(salt string) (int, int) {
		st := state()
		p.Produce(context.Background(), st, saltedChatRequest(t, a.Model(), salt, system, "a different question"), []*endpoint.Endpoint{epA})
		m, _ := p.Match(st)
		return m.Blocks(epA), m.TotalBlocks
	}
	eventually(t, "the last attempt's blocks in the index", func() bool { got, total := held("tenant-1"); return got >= total-2 })
	for _, salt := range []string{"", "tenant-2"} {
		if got, _ := held(salt); got != 0 {
			t.Errorf("salt %q: matched %d blocks stored under tenant-1", salt, got)
		}
	}
}

// TestProducerCountsStrangers: events under a topic naming no endpoint of
// the pool are counted and dropped, not indexed under a made-up server.
func TestProducerCountsStrangers(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	pl := &pool{}
	p := startProducer(t, `{"kvEventsConfig":{"zmqEndpoint":"tcp://127.0.0.1:0"}}`, pl, reg)
	eventually(t, "the events socket", func() bool { return p.EventsAddr() != "" })
	pl.set(ep(8000))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, err := kvevents.NewPublisher(ctx, p.EventsAddr(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	eventually(t, "a stranger's events counted", func() bool {
		_ = pub.Publish("kv@10.9.9.9:1@m", batch(stored(seq(1, 16), 16, 1, 0)))
		return testutil.ToFloat64(p.metrics.events.WithLabelValues(ProducerType, "unknown_source")) > 0
	})
	if p.index.Keys() != 0 {
		t.Errorf("%d keys from a stranger", p.index.Keys())
	}
	// The address alone resolves when one endpoint has it.
	eventually(t, "events under the bare IP", func() bool {
		_ = pub.Publish("kv@10.0.0.1@m", batch(stored(seq(1, 16), 16, 1, 0)))
		return p.index.Blocks(ep(8000).HostPort) == 1
	})
}

func TestProducerParamsErrors(t *testing.T) {
	t.Parallel()
	for params, want := range map[string]string{
		`{"tokenProcessorConfig":{"blockSize":0}}`:                                       "tokenProcessorConfig.blockSize",
		`{"indexerConfig":{"kvBlockIndexConfig":{"redisConfig":{"address":"x"}}}}`:       "redisConfig: a shared Redis index is not supported",
		`{"kvEventsConfig":{"engineType":"sglang"}}`:                                     "only vllm's KV events",
		`{"kvEventsConfig":{"zmqEndpoint":"localhost:5557"}}`:                            "kvEventsConfig.zmqEndpoint",
		`{"kvEventsConfig":{"discoverPods":true,"podDiscoveryConfig":{"socketPort":0}}}`: "socketPort",
		`{"speculativeTTL":"-1s"}`:                                                       "speculativeTTL",
		`{"sessionManager":"s"}`:                                                         "sessionManager",
		`{"unknownThing":true}`:                                                          `unknown field "unknownThing"`,
	} {
		_, err := ProducerFactory("p", json.RawMessage(params), nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", params, err, want)
		}
	}
	// llm-d's sample parameters load as they are.
	if _, err := ProducerFactory("p", json.RawMessage(`{"tokenProcessorConfig":{"blockSize":64,"hashSeed":"42"},
		"indexerConfig":{"kvBlockIndexConfig":{"enableMetrics":true,"metricsLoggingInterval":60000000000},
		"tokenizersPoolConfig":{"modelName":"m","hf":{"tokenizersCacheDir":"/tmp"}}},
		"kvEventsConfig":{"zmqEndpoint":"tcp://0.0.0.0:5557","topicFilter":"kv@","concurrency":4},
		"speculativeIndexing":true,"speculativeTTL":"2s"}`), nil); err != nil {
		t.Errorf("llm-d's parameters: %v", err)
	}
}

func TestResolveNeedsExactTokens(t *testing.T) {
	t.Parallel()
	p, err := ProducerFactory("p", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	est := newTokens(t, `{}`, nil)
	h := (&scheduler.Handle{}).WithLookup(func(name string) (scheduler.Plugin, bool) { return est, name == TokenProducerType })
	if err := p.(*Producer).Resolve(h); err == nil || !strings.Contains(err.Error(), "set its backend to vllm") {
		t.Errorf("estimate tokens: err = %v", err)
	}
	none := (&scheduler.Handle{}).WithLookup(func(string) (scheduler.Plugin, bool) { return nil, false })
	if err := p.(*Producer).Resolve(none); err == nil || !strings.Contains(err.Error(), "add a token-producer") {
		t.Errorf("no token producer: err = %v", err)
	}
}

// TestProducerConnectsToEachPod: with discoverPods the producer subscribes
// to every endpoint of the pool at socketPort, where the server binds, and
// lets go of an endpoint that leaves.
func TestProducerConnectsToEachPod(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, err := sim.NewKVEventPublisher(ctx, fmt.Sprintf("tcp://127.0.0.1:%d", port), true)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := sim.Start(ctx, sim.Config{Address: "127.0.0.1", KVEvents: pub,
		Capacity: sim.Capacity{KVCacheBlocks: 256, BlockSize: 16},
		Latency:  sim.Latency{InterTokenLatency: sim.Ptr(time.Millisecond), TimeToFirstToken: sim.Ptr(time.Millisecond)}})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	go pub.Run(ctx, nil)
	e := endpoint.New(endpoint.Spec{Name: "s", Address: "127.0.0.1", Port: inst.Port()})

	pl := &pool{}
	pl.set(e)
	p := startProducer(t, fmt.Sprintf(`{"kvEventsConfig":{"discoverPods":true,"podDiscoveryConfig":{"socketPort":%d}}}`, port), pl, prometheus.NewRegistry())
	eventually(t, "the subscription", func() bool { return testutil.ToFloat64(p.metrics.subs) == 1 })
	i := 0
	eventually(t, "the server's blocks", func() bool { // the first events may go before the connection is up
		i++
		chat(t, inst.URL(), chatRequest(t, inst.Model(), words(fmt.Sprintf("s%d-", i), 50), "q"))
		return p.index.Blocks(e.HostPort) > 0
	})
	pl.set()
	eventually(t, "the subscription to end", func() bool { return testutil.ToFloat64(p.metrics.subs) == 0 })
}

// TestProducerWaitsForItsPort: a port another process holds is retried,
// with the subscriptions gauge at 0, until it is free.
func TestProducerWaitsForItsPort(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	p := startProducer(t, `{"kvEventsConfig":{"zmqEndpoint":"tcp://`+addr+`"}}`, &pool{}, prometheus.NewRegistry())
	time.Sleep(300 * time.Millisecond)
	if p.EventsAddr() != "" || testutil.ToFloat64(p.metrics.subs) != 0 {
		t.Fatalf("bound %q with the port taken", p.EventsAddr())
	}
	ln.Close()
	eventually(t, "the port, once free", func() bool { return p.EventsAddr() != "" })
}

// TestProducerStateShowsWhatArrived: /debug/plugins/state tells whether
// events arrive and what each server's events put in the index.
func TestProducerStateShowsWhatArrived(t *testing.T) {
	t.Parallel()
	pl := &pool{}
	p := startProducer(t, `{"kvEventsConfig":{"zmqEndpoint":"tcp://127.0.0.1:0"}}`, pl, prometheus.NewRegistry())
	eventually(t, "the events socket", func() bool { return p.EventsAddr() != "" })
	e := ep(8000)
	pl.set(e)
	p.Ingest(e.HostPort, batch(stored(seq(1, 48), 16, 1, 0)))
	st := p.DumpState().(ProducerState)
	if st.Mode != "bind" || st.EventsAddress != p.EventsAddr() || st.Subscriptions != 1 || st.Blocks != 3 || st.BlockSizeTokens != 16 {
		t.Errorf("state %+v", st)
	}
	if s, ok := st.Endpoints["e"]; !ok || s.Blocks != 3 || s.BlockSizeTokens != 16 || s.SecondsSinceEvent < 0 || s.SecondsSinceEvent > 60 {
		t.Errorf("endpoints %+v, want e with 3 blocks of 16 tokens, just now", st.Endpoints)
	}
}
