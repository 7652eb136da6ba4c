package engine_test

import (
	"fmt"
	"time"

	"github.com/openepp/openepp/pkg/sim/engine"
	"github.com/openepp/openepp/pkg/sim/tokenize"
)

// A discrete-event loop drives the engine in virtual time: submit arrivals,
// then repeatedly step the engine at its NextEventTime. A fleet simulation
// does the same with one entry per engine in its event queue, re-reading
// NextEventTime after every Submit (an idle engine wakes up) and Step.
func Example() {
	cfg, _ := engine.Profile("blis-l8b-h100")
	e, _ := engine.New(cfg)
	system := "You are a helpful assistant. Answer in one short paragraph, citing sources. "
	for i, q := range []string{"What is prefix caching?", "What is paged attention?"} {
		toks := tokenize.Append(nil, system+system+system+q)
		at := time.Duration(i) * time.Second
		if err := e.Submit(engine.Request{ID: uint64(i), Tokens: toks, MaxTokens: 3}, at); err != nil {
			fmt.Println(err)
			return
		}
		for {
			next, ok := e.NextEventTime()
			if !ok {
				break
			}
			for _, ev := range e.Step(next) {
				if ev.Token == 1 {
					fmt.Printf("request %d: %d cached tokens, TTFT %v\n", ev.ID, ev.Cached, ev.Time-at)
				}
			}
		}
	}
	// Output:
	// request 0: 0 cached tokens, TTFT 6.83945ms
	// request 1: 48 cached tokens, TTFT 6.01145ms
}
