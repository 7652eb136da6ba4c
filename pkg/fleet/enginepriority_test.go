package fleet

import (
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/sim/engine"
)

// TestEnginePriorityJumpsTheServerQueue: servers seating two requests each
// hold six batch requests (four running, two waiting); a critical request
// arriving later waits behind the waiting ones, unless the policy carries
// its priority to the servers, whose queues then start it first.
func TestEnginePriorityJumpsTheServerQueue(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{false, true} {
		s := evictionSim(t, []byte(config.DefaultText))
		s.spec.Policy.EnginePriority = on
		cfg := s.engCfg
		cfg.MaxNumSeqs = 2
		if on {
			cfg.Policy = engine.Priority
		}
		for i := range s.servers {
			var err error
			if s.servers[i].eng, err = engine.New(cfg); err != nil {
				t.Fatal(err)
			}
		}
		var batchIDs []uint64
		for range 6 {
			batchIDs = append(batchIDs, injectOutput(t, s, batch, 40))
		}
		drive(t, s, time.Millisecond)
		id := injectOutput(t, s, critical, 40)
		drive(t, s, time.Minute)
		f := &s.flights[id]
		if f.status != flightDone {
			t.Fatalf("engine priority %v: critical request %v, want done", on, f.status)
		}
		first := f.arrival + f.ttft
		overtaken := 0
		for _, b := range batchIDs {
			if g := &s.flights[b]; g.arrival+g.ttft > first {
				overtaken++
			}
		}
		t.Logf("engine priority %v: critical TTFT %v, ahead of %d earlier batch requests", on, f.ttft, overtaken)
		if (overtaken > 0) != on {
			t.Errorf("engine priority %v: the critical request's first token came before %d earlier batch requests' (TTFT %v)",
				on, overtaken, f.ttft)
		}
	}
}

// injectOutput makes a request of class c with out output tokens arrive now.
func injectOutput(t *testing.T, s *sim, c uint8, out int) uint64 {
	t.Helper()
	p, err := s.src.next(s.rng)
	if err != nil {
		t.Fatal(err)
	}
	p.maxTokens = out
	id := uint64(len(s.flights))
	s.open++
	s.send(flight{p: p, arrival: s.now(), measured: true, class: c})
	return id
}
