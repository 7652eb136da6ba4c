package sim

import (
	"context"
	"sync"
	"time"

	"github.com/openepp/openepp/pkg/sim/engine"
)

// idleWait is how long the driver sleeps with nothing to do; a submission
// wakes it earlier.
const idleWait = time.Hour

// driver runs an engine in real time: engine time is the time since the
// driver was made. One goroutine (run) steps the engine when its next
// iteration ends and publishes tokens to the HTTP calls waiting on them.
type driver struct {
	mu     sync.Mutex
	eng    *engine.Engine
	origin time.Time
	nextID uint64
	reqs   map[uint64]*progress
	obs    observers
	kick   chan struct{}
	// encodes is whether the engine prices encoding multimodal items,
	// so submit marks their placeholder spans.
	encodes bool
}

// call is one HTTP request's engine requests (several for a completions
// request with a list of prompts). notify receives a value whenever any of
// them progresses.
type call struct {
	notify chan struct{}
	parts  []*progress
}

// progress is what the driver publishes about one engine request. Fields
// are guarded by driver.mu.
type progress struct {
	id      uint64
	call    *call
	prompt  int
	arrival time.Duration
	last    time.Duration
	tokens  int
	cached  int
	done    bool
}

func newDriver(eng *engine.Engine, obs observers) *driver {
	return &driver{
		eng: eng, origin: time.Now(), obs: obs,
		reqs: make(map[uint64]*progress), kick: make(chan struct{}, 1),
		encodes: eng.Config().EncodePerToken > 0,
	}
}

func (d *driver) now() time.Duration { return time.Since(d.origin) }

// run steps the engine until ctx is done or closing is closed.
func (d *driver) run(ctx context.Context, closing <-chan struct{}) {
	timer := time.NewTimer(idleWait)
	defer timer.Stop()
	for {
		timer.Reset(d.tick())
		select {
		case <-ctx.Done():
			return
		case <-closing:
			return
		case <-d.kick:
		case <-timer.C:
		}
	}
}

// tick performs every engine step due by now and returns how long to sleep.
func (d *driver) tick() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	for {
		next, ok := d.eng.NextEventTime()
		if !ok {
			return idleWait
		}
		if next > now {
			return next - now
		}
		d.dispatch(d.eng.Step(now))
	}
}

func (d *driver) dispatch(events []engine.Event) {
	for _, ev := range events {
		p := d.reqs[ev.ID]
		if p == nil {
			continue
		}
		switch {
		case ev.Token == 1:
			d.obs.ttft(ev.Time - p.arrival)
		default:
			d.obs.itl(ev.Time - p.last)
		}
		p.tokens, p.cached, p.last = ev.Token, ev.Cached, ev.Time
		if ev.Done {
			p.done = true
			delete(d.reqs, ev.ID)
			d.obs.e2e(ev.Time - p.arrival)
		}
		select {
		case p.call.notify <- struct{}{}:
		default:
		}
	}
}

// submit queues one engine request per prompt, all or none, each a copy
// of like (max tokens, adapter, cache salt, remote prefill) with its own
// ID and prompt, and its P2P pull from pulls (nil for none).
func (d *driver) submit(prompts [][]uint32, pulls []int, like engine.Request) (*call, error) {
	c := &call{notify: make(chan struct{}, 1)}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	for j, toks := range prompts {
		d.nextID++
		req := like
		req.ID, req.Tokens = d.nextID, toks
		if pulls != nil {
			req.PullTokens = pulls[j]
		}
		if d.encodes {
			req.Media = mediaSpans(toks)
		}
		if err := d.eng.Submit(req, now); err != nil {
			d.cancelLocked(c)
			return nil, err
		}
		p := &progress{id: req.ID, call: c, prompt: len(toks), arrival: now}
		d.reqs[req.ID] = p
		c.parts = append(c.parts, p)
	}
	select {
	case d.kick <- struct{}{}:
	default:
	}
	return c, nil
}

// cancel withdraws a call's unfinished requests (the client went away).
func (d *driver) cancel(c *call) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cancelLocked(c)
}

func (d *driver) cancelLocked(c *call) {
	for _, p := range c.parts {
		if !p.done {
			d.eng.Cancel(p.id)
			delete(d.reqs, p.id)
			p.done = true
		}
	}
}

// snapshot copies a call's progress into dst (len(c.parts)) and reports
// whether every part is done.
func (d *driver) snapshot(c *call, dst []progress) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	all := true
	for j, p := range c.parts {
		dst[j] = *p
		all = all && p.done
	}
	return all
}

// cachedPrefixes returns how many leading tokens of each prompt the prefix
// cache holds, for adapter lora under cache salt salt.
func (d *driver) cachedPrefixes(prompts [][]uint32, lora, salt string) []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]int, len(prompts))
	for j, p := range prompts {
		out[j] = d.eng.CachedPrefixSalted(p, lora, salt)
	}
	return out
}

// loadLoRA and unloadLoRA change where an adapter is resident (vLLM's
// dynamic adapter endpoints); see engine.LoadLoRA and engine.UnloadLoRA.
func (d *driver) loadLoRA(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.eng.LoadLoRA(name, d.now())
}

func (d *driver) unloadLoRA(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.eng.UnloadLoRA(name)
}

func (d *driver) metrics() engine.Metrics {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.eng.Metrics()
}
