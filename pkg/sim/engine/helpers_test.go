package engine

import (
	"slices"
	"testing"
	"time"
)

const (
	ms = time.Millisecond
	us = time.Microsecond
)

// testConfig has round numbers so expected times can be written down:
// a prefill step costs 1ms + 2ms + 10µs/token, a decode step 1ms + 100µs/seq.
func testConfig() Config {
	return Config{
		Model: "m", MaxNumSeqs: 8, MaxNumBatchedTokens: 2048, NumBlocks: 1000, BlockSize: 16,
		StepOverhead: ms, PrefillPerToken: 10 * us, DecodePerSeq: 100 * us, PrefillOverhead: 2 * ms,
		MaxLoRAs: 2, LoRALoadDelay: 50 * ms,
	}
}

func newEngine(t testing.TB, cfg Config) *Engine {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

// tokens returns n distinct token IDs derived from seed.
func tokens(seed uint32, n int) []uint32 {
	out := make([]uint32, n)
	for i := range out {
		out[i] = seed*1_000_003 + uint32(i)
	}
	return out
}

// withPrefix returns prefix followed by n tokens derived from seed.
func withPrefix(prefix []uint32, seed uint32, n int) []uint32 {
	return append(slices.Clone(prefix), tokens(seed, n)...)
}

// arrival is a request submitted at a virtual time.
type arrival struct {
	at  time.Duration
	req Request
}

// simulate runs arrivals (sorted by time) through e in virtual time, as the
// fleet simulation will, and returns every event. Arrivals at the same
// instant as an engine event are submitted first.
func simulate(t testing.TB, e *Engine, arrivals []arrival) []Event {
	t.Helper()
	var out []Event
	for steps := 0; ; steps++ {
		if steps > 10_000_000 {
			t.Fatal("simulation did not terminate")
		}
		next, busy := e.NextEventTime()
		if len(arrivals) > 0 && (!busy || arrivals[0].at <= next) {
			if err := e.Submit(arrivals[0].req, arrivals[0].at); err != nil {
				t.Fatalf("Submit(%d): %v", arrivals[0].req.ID, err)
			}
			arrivals = arrivals[1:]
			continue
		}
		if !busy {
			return out
		}
		out = append(out, e.Step(next)...)
	}
}

// together submits all requests at time 0.
func together(reqs ...Request) []arrival {
	out := make([]arrival, len(reqs))
	for i, r := range reqs {
		out[i] = arrival{req: r}
	}
	return out
}

// summary is what tests compare per request.
type summary struct {
	First, Last time.Duration
	Tokens      int
	Cached      int
}

func summarize(t testing.TB, events []Event) map[uint64]summary {
	t.Helper()
	out := map[uint64]summary{}
	for _, ev := range events {
		s := out[ev.ID]
		if ev.Token != s.Tokens+1 {
			t.Fatalf("request %d: token %d after %d", ev.ID, ev.Token, s.Tokens)
		}
		if ev.Token == 1 {
			s.First = ev.Time
		}
		s.Last, s.Tokens, s.Cached = ev.Time, ev.Token, ev.Cached
		out[ev.ID] = s
	}
	return out
}

// tokenTimes returns the times of request id's tokens.
func tokenTimes(events []Event, id uint64) []time.Duration {
	var out []time.Duration
	for _, ev := range events {
		if ev.ID == id {
			out = append(out, ev.Time)
		}
	}
	return out
}
