// Package plugintest is the shared conformance check every built-in (and
// out-of-tree) plugin must pass: outputs in range and aligned, inputs never
// mutated, deterministic for a seed, empty and single-endpoint inputs handled,
// and concurrent calls safe under -race. It is a test-support package, like
// net/http/httptest, and is imported only from tests.
package plugintest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
)

// Epoch is the fixed "now" of endpoints built here and of states from State.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Endpoints returns n endpoints on 10.0.x.y:8000 with varied, fresh metrics
// derived from seed (queue 0..20, running 0..64, KV 0..1, some LoRAs).
func Endpoints(n int, seed uint64) []*endpoint.Endpoint {
	r := rand.New(rand.NewPCG(seed, 7))
	out := make([]*endpoint.Endpoint, n)
	for i := range out {
		e := endpoint.New(endpoint.Spec{
			Name:    fmt.Sprintf("ep-%04d", i),
			Address: fmt.Sprintf("10.0.%d.%d", i/250, i%250+1),
			Port:    8000,
			Labels:  map[string]string{"app": "vllm", "zone": fmt.Sprintf("z%d", i%3)},
		})
		e.SetMetrics(&endpoint.Metrics{
			WaitingQueueSize:    r.IntN(21),
			RunningRequestsSize: r.IntN(65),
			KVCacheUsagePercent: r.Float64(),
			ActiveModels:        map[string]int{fmt.Sprintf("lora-%d", i%4): 0},
			WaitingModels:       map[string]int{},
			MaxActiveModels:     2,
			CacheBlockSize:      16,
			CacheNumBlocks:      1024,
			UpdateTime:          Epoch.Add(-10 * time.Millisecond),
		})
		e.SetStale(false)
		out[i] = e
	}
	return out
}

// Request returns a chat request for model with a prompt of about n bytes.
func Request(model string, n int) *scheduler.Request {
	prompt := []byte(fmt.Sprintf("[{\"role\":\"user\",\"content\":%q}]", string(slices.Repeat([]byte("abcd efgh "), n/10+1))[:n]))
	return &scheduler.Request{
		ID: "req-1", Model: model, IncomingModel: model,
		Body:    &request.Body{API: request.ChatCompletions, Model: model, Prompt: prompt, Raw: prompt},
		Headers: map[string]string{":path": "/v1/chat/completions", "x-request-id": "req-1"},
	}
}

// State returns a state seeded with seed at Epoch.
func State(seed uint64) *scheduler.State { return scheduler.NewState(seed, Epoch) }

// snapshot records what a plugin must not change.
type snapshot struct {
	order   []*endpoint.Endpoint
	metrics []*endpoint.Metrics
}

func take(eps []*endpoint.Endpoint) snapshot {
	s := snapshot{order: slices.Clone(eps)}
	for _, e := range eps {
		s.metrics = append(s.metrics, e.Metrics())
	}
	return s
}

func (s snapshot) check(t *testing.T, eps []*endpoint.Endpoint, what string) {
	t.Helper()
	if !slices.Equal(s.order, eps) {
		t.Errorf("%s modified its input slice", what)
	}
	for i, e := range eps {
		if e.Metrics() != s.metrics[i] {
			t.Errorf("%s replaced the metrics of %s", what, e.Name)
		}
	}
}

// concurrently runs fn from several goroutines so -race can see conflicts.
func concurrently(fn func(i int)) {
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				fn(g*100 + i)
			}
		}()
	}
	wg.Wait()
}

var ctx = context.Background()
