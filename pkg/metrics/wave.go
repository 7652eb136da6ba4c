package metrics

import (
	"sync"
	"time"
)

// wave scrapes the endpoints that share one scrape instant (a slot) from a
// single goroutine: at the instant it writes every member's request, then
// reads and applies the answers in turn, most of which have arrived by
// then. Compared with a goroutine per endpoint this saves a timer wake-up
// and a park and wake-up per scrape, and it leaves one runnable goroutine
// instead of a burst of them. That matters on a busy EPP core: Go has no
// goroutine priorities, and request bytes that arrive during a burst wait
// until every queued scrape goroutine has run (the runtime polls the
// network only when it has nothing else to run), while a wave steps aside
// whenever it waits for an answer and every waveYieldAfter of work.
//
// Only endpoints that are cheap to scrape together are members: a live
// kept-alive connection, a successful last scrape, and an answer that came
// within the wave's budget (Scraper.waveBudget). The others scrape on their
// own goroutine (target.solo), so a dead, refusing or slow server never
// holds up the rest. A member whose answer has not begun within the budget
// gets a goroutine of its own that finishes the scrape and goes on alone
// until the server is quick again; one whose connection broke is retried
// at once on its own goroutine. What the budget does not bound is a server
// that begins its answer and then stalls: its wave-mates wait for it, at
// most Timeout, once, after which it scrapes alone.
type wave struct {
	s    *Scraper
	slot slot
	// wake tells an idle wave that a target joined.
	wake chan struct{}

	mu      sync.Mutex
	joining []*target // handed over, taken in at the next instant
	closed  bool

	sent []*target // scratch, owned by the wave's goroutine
	size int       // members, as last counted in Scraper.waveEndpoints
}

// joinWave hands t to the wave of its slot, starting that wave if needed.
// It reports false once the scraper is stopping; the caller keeps t then.
func (s *Scraper) joinWave(t *target) bool {
	sl := t.slot()
	s.wavesMu.Lock()
	w := s.waves[sl]
	if w == nil {
		if s.runCtx == nil || s.runCtx.Err() != nil {
			s.wavesMu.Unlock()
			return false
		}
		if s.waves == nil {
			s.waves = map[slot]*wave{}
		}
		w = &wave{s: s, slot: sl, wake: make(chan struct{}, 1)}
		s.waves[sl] = w
		s.loops.Add(1)
		go w.run()
	}
	s.wavesMu.Unlock()

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	w.joining = append(w.joining, t)
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return true
}

// A wave that has worked for waveYieldAfter without waiting sleeps for
// waveYieldSleep, so that requests which arrived meanwhile are handled
// before the rest of the wave: sleeping parks the goroutine and the runtime
// then polls the network, where runtime.Gosched would run the wave again
// first. The sleep is long because a goroutine woken by its timer runs
// next, ahead of the several goroutine hand-offs one request takes in
// gRPC; it only delays publishing the last members' pages, which their
// servers wrote at the instant and which wait in the socket buffers. At
// ~30 µs of CPU per scrape, a wave of 25 steps aside three or four times:
// 3-4 ms of its 50 ms interval.
const (
	waveYieldAfter = 200 * time.Microsecond
	waveYieldSleep = time.Millisecond
)

// waveBudget is how long after a wave's instant a member's answer may
// begin and the member still be read by the wave: a tenth of the interval
// (5 ms at the default 50 ms), at most a quarter of Timeout. Loopback
// answers take tens of microseconds; a model server that takes longer is
// busy enough to be scraped alone.
func (s *Scraper) waveBudget() time.Duration {
	return min(s.interval()/10, s.opts.Timeout/4)
}

// waveReady reports whether t qualifies for its wave (see wave).
func (t *target) waveReady() bool {
	return t.s.slots() > 0 && t.conn != nil && t.conn.live() && !t.failing &&
		t.lastFetch < t.s.waveBudget()/2 && t.ctx.Err() == nil
}

// run ticks at the slot's instant while the wave has members and waits
// for one otherwise; a wave left empty for ten intervals retires (the pool
// shrank, or its members turned slow), and one whose slot count the pool
// no longer uses disbands. It ends, releasing its members, with the
// scraper.
func (w *wave) run() {
	defer w.s.loops.Done()
	ctx := w.s.runCtx
	var members []*target
	defer func() { w.close(members) }()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		members = w.admit(members)
		if w.outdated() {
			w.disband(members)
			members = nil
			return
		}
		w.count(len(members))
		if len(members) == 0 {
			timer.Reset(10 * w.s.interval())
			select {
			case <-ctx.Done():
				return
			case <-w.wake:
				timer.Stop()
			case <-timer.C:
				if w.retire() {
					return
				}
			}
			continue
		}
		iv := int64(w.s.interval())
		timer.Reset(untilInstant(w.slot.offset(iv), iv, time.Now()))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		if !w.outdated() {
			members = w.scrape(members)
		}
	}
}

// outdated reports whether the pool's size changed the number of scrape
// instants since the wave was formed (see Scraper.setSlots).
func (w *wave) outdated() bool { return w.slot.of != w.s.slots() }

// disband hands every member back to its own goroutine, which joins the
// wave of the endpoint's new slot at once, and removes the wave.
func (w *wave) disband(members []*target) {
	w.s.wavesMu.Lock()
	if w.s.waves[w.slot] == w {
		delete(w.s.waves, w.slot)
	}
	w.mu.Lock()
	w.closed = true
	joining := w.joining
	w.joining = nil
	w.mu.Unlock()
	w.s.wavesMu.Unlock()
	w.count(0)
	for _, t := range append(members, joining...) {
		if t.ctx.Err() != nil {
			t.release()
			continue
		}
		go t.solo()
	}
}

// admit takes in the targets that joined and lets go of removed endpoints.
func (w *wave) admit(members []*target) []*target {
	w.mu.Lock()
	members = append(members, w.joining...)
	clear(w.joining)
	w.joining = w.joining[:0]
	w.mu.Unlock()
	kept := members[:0]
	for _, t := range members {
		if t.ctx.Err() != nil {
			t.release()
			continue
		}
		kept = append(kept, t)
	}
	clear(members[len(kept):])
	return kept
}

// count keeps the scraper's total of wave members up to date.
func (w *wave) count(n int) {
	w.s.waveEndpoints.Add(int64(n - w.size))
	w.size = n
}

// retire removes the wave unless a target is joining it; a later joiner
// starts a new one.
func (w *wave) retire() bool {
	w.s.wavesMu.Lock()
	defer w.s.wavesMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.joining) > 0 {
		return false
	}
	w.closed = true
	delete(w.s.waves, w.slot)
	return true
}

// close refuses further joins and releases every member.
func (w *wave) close(members []*target) {
	w.mu.Lock()
	w.closed = true
	joining := w.joining
	w.joining = nil
	w.mu.Unlock()
	for _, t := range append(members, joining...) {
		t.release()
	}
	w.count(0)
}

// scrape performs one wave and returns the members that stay; the others
// now belong to goroutines of their own.
func (w *wave) scrape(members []*target) []*target {
	start := time.Now()
	iv := w.s.interval()
	deadline := start.Add(w.s.opts.Timeout)
	budget := w.s.waveBudget()
	firstByteBy := start.Add(budget)
	kept, sent := members[:0], w.sent[:0]
	for _, t := range members {
		switch {
		case t.ctx.Err() != nil:
			t.release()
		case start.Sub(t.lastStart) < iv/8:
			kept = append(kept, t) // scraped alone moments ago, just before joining
		case t.sendWave(deadline) != nil:
			go t.retryAlone() // the server closed the kept-alive connection, as get retries
		default:
			sent = append(sent, t)
		}
	}
	worked := time.Now() // since the wave last waited
	for _, t := range sent {
		if time.Since(worked) > waveYieldAfter {
			time.Sleep(waveYieldSleep)
			worked = time.Now()
		}
		// Past the budget, an answer already on its way is still taken.
		by := firstByteBy
		if soon := time.Now().Add(budget / 20); soon.After(by) {
			by = soon
		}
		waited, err := t.conn.awaitFirstByte(by, deadline)
		if waited {
			worked = time.Now()
		}
		if err != nil {
			if t.conn.live() {
				go t.finishAlone(start) // slow: its answer is read on its own goroutine
			} else {
				go t.retryAlone()
			}
			continue
		}
		t.collect(start)
		if t.failing || !t.conn.live() {
			go t.solo()
			continue
		}
		kept = append(kept, t)
	}
	clear(members[len(kept):])
	clear(sent)
	w.sent = sent
	return kept
}

// sendWave writes the target's request for its wave.
func (t *target) sendWave(deadline time.Time) error {
	t.conn.narrow = t.wantNarrow()
	return t.conn.send(deadline)
}

// finishAlone reads the answer to the request a wave sent, then scrapes
// the endpoint on its own goroutine.
func (t *target) finishAlone(start time.Time) {
	stop := t.conn.interruptOn(t.ctx)
	t.collect(start)
	stop()
	t.solo()
}

// collect reads the answer to the request a wave sent and records the
// scrape that began at start, unless the endpoint is gone.
func (t *target) collect(start time.Time) {
	page := t.s.getPage()
	defer t.s.putPage(page)
	resp, err := t.conn.receive()
	reason, err := t.readResponse(resp, err, page)
	if t.ctx.Err() == nil {
		t.record(start, page, reason, err)
	}
}

// retryAlone scrapes at once on a fresh connection, then on the endpoint's
// own goroutine.
func (t *target) retryAlone() {
	t.poll(t.ctx)
	t.solo()
}
