package plugins

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// defaultScheduler builds the scheduler of the upstream default config
// (queue 2, kv-cache 2, prefix 3, max-score picker) with the real plugins.
func defaultScheduler(tb testing.TB, eps []*endpoint.Endpoint) *scheduler.Scheduler {
	tb.Helper()
	reg, err := InTree()
	if err != nil {
		tb.Fatal(err)
	}
	cfg, err := config.Load([]byte(config.DefaultText))
	if err != nil {
		tb.Fatal(err)
	}
	built, err := config.BuildWith(cfg, config.BuildOptions{Registry: reg, Seed: 1, Handle: &scheduler.Handle{
		Log: logr.Discard(), Clock: scheduler.RealClock{}, Endpoints: func() []*endpoint.Endpoint { return eps },
	}})
	if err != nil {
		tb.Fatal(err)
	}
	return built.Scheduler
}

// prompts returns n chat prompts of about size bytes that share a long
// system prompt in groups of 8, as agents and RAG traffic do.
func prompts(n, size int) []*request.Body {
	out := make([]*request.Body, n)
	for i := range out {
		system := strings.Repeat(fmt.Sprintf("group %d system prompt. ", i/8), size*3/4/24+1)
		question := strings.Repeat(fmt.Sprintf("question %d? ", i), size/4/13+1)
		raw := []byte(fmt.Sprintf(`{"model":"m","messages":[{"role":"system","content":%q},{"role":"user","content":%q}]}`, system, question))
		b, err := request.Parse(request.ChatCompletions, raw)
		if err != nil {
			panic(err)
		}
		out[i] = b
	}
	return out
}

// decide is one full routing decision as the server makes it: new state,
// Schedule, then the PreRequest hooks (which record it in the prefix index).
func decide(s *scheduler.Scheduler, body *request.Body, eps []*endpoint.Endpoint) (*scheduler.Result, error) {
	req := &scheduler.Request{ID: "r", Model: body.Model, IncomingModel: body.Model, Body: body, Headers: map[string]string{}}
	st := s.NewState()
	res, err := s.Schedule(context.Background(), st, req, eps)
	if err == nil {
		s.PreRequest(context.Background(), st, req, res)
	}
	return res, err
}

// BenchmarkSchedule measures one decision under the default config with the
// prefix index warmed by earlier requests of the same workload.
func BenchmarkSchedule(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		for _, size := range []int{1 << 10, 100 << 10} {
			b.Run(fmt.Sprintf("endpoints=%d/prompt=%dKiB", n, size>>10), func(b *testing.B) {
				eps := plugintest.Endpoints(n, 1)
				s := defaultScheduler(b, eps)
				ps := prompts(64, size)
				for i := range 4 * len(ps) { // warm the index
					if _, err := decide(s, ps[i%len(ps)], eps); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				b.ResetTimer()
				i := 0
				for b.Loop() {
					if _, err := decide(s, ps[i%len(ps)], eps); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		}
	}
}

// TestScheduleAllocationBudget keeps the hot path's allocations in check:
// at 100 endpoints with a 1 KiB prompt a decision (the request and its
// headers included) may allocate 15 times; it took 22 before the scorers'
// outputs, the picker's input and the state's random source shared
// allocations.
func TestScheduleAllocationBudget(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation measurement")
	}
	eps := plugintest.Endpoints(100, 1)
	s := defaultScheduler(t, eps)
	ps := prompts(16, 1<<10)
	for i := range 64 {
		if _, err := decide(s, ps[i%len(ps)], eps); err != nil {
			t.Fatal(err)
		}
	}
	i := 0
	allocs := testing.AllocsPerRun(200, func() {
		_, _ = decide(s, ps[i%len(ps)], eps)
		i++
	})
	if allocs > 15 {
		t.Errorf("a decision allocates %.0f times; budget is 15", allocs)
	}
	t.Logf("allocations per decision: %.1f", allocs)
}
