package metrics

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/fetchfail"
)

// acceptHeader asks for the classic text format: it is what expfmt's text
// parser reads, and it keeps servers from picking protobuf or OpenMetrics.
const acceptHeader = "text/plain;version=0.0.4;q=1,*/*;q=0.1"

// target is one endpoint's scraping. Its fields belong to one goroutine at
// a time: its own loop (run, solo) or its wave's (wave.go), which hand the
// target to each other; the endpoint is the only thing shared, and it is
// written through its atomic setters.
type target struct {
	s    *Scraper
	ep   *endpoint.Endpoint
	eng  *engine
	conn *pageConn
	// ctx ends when the endpoint leaves the store or the scraper stops.
	ctx context.Context
	// sum places the endpoint on the interval's grid (see phaseAt).
	sum uint64
	// lastStart and lastFetch are when the last scrape began and how long
	// its answer took to arrive: a wave skips a member that was scraped
	// moments ago, and only a quick server joins one.
	lastStart time.Time
	lastFetch time.Duration
	// connErr is why conn could not be built (a malformed address); every
	// scrape then fails with it, so the problem is logged and counted.
	connErr error
	text    expfmt.TextParser
	rd      bytes.Reader
	lora    loraCache

	// narrow is whether the server is asked for the wanted families only;
	// wholeFamilies and wholeBytes describe the whole page it is checked
	// against, narrowRetryAt when a rejected target probes again (see
	// narrow.go).
	narrow        narrowState
	wholeFamilies uint64
	wholeBytes    int
	narrowRetryAt time.Time

	lastOK       time.Time
	failing      bool
	failedFields fieldSet
	failedCustom string // keys of the custom metrics last unreadable
	// filtered and prev hold the wanted lines of this page and of the last
	// successfully applied one; equal bytes mean nothing changed. segs and
	// prevSegs are their family runs; prevFams is prev parsed, whose
	// families are reused when their lines did not change (see apply).
	filtered, prev []byte
	segs, prevSegs []segment
	prevFams       map[string]*dto.MetricFamily
	changed        []byte
	reused         []int
	havePrev       bool
}

func newTarget(s *Scraper, ep *endpoint.Endpoint, eng *engine, url string) *target {
	var conn *pageConn
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err == nil {
		req.Header.Set("Accept", acceptHeader)
		req.Header.Set("User-Agent", "openepp")
		var tlsCfg *tls.Config
		if req.URL.Scheme == "https" {
			tlsCfg = s.tlsConfig
		}
		query := ""
		if !s.opts.FullPages {
			query = narrowQuery(eng.families)
		}
		conn, err = newPageConn(req, tlsCfg, query)
	}
	narrow := narrowNever
	if err == nil && conn.narrowBytes != nil {
		narrow = narrowUntried
	}
	h := fnv.New64a()
	_, _ = io.WriteString(h, ep.Name+"|"+ep.MetricsHostPort)
	return &target{
		s:       s,
		ep:      ep,
		eng:     eng,
		conn:    conn,
		ctx:     context.Background(),
		sum:     mix(h.Sum64()),
		connErr: err,
		text:    expfmt.NewTextParser(model.UTF8Validation),
		narrow:  narrow,
		lastOK:  ep.Metrics().UpdateTime, // carried over when only labels changed
	}
}

// run scrapes at once (so a new endpoint gets metrics promptly), then at
// this endpoint's instant of every interval (see phase).
func (t *target) run() {
	t.s.log.V(1).Info("scraping endpoint", "endpoint", t.ep.String(), "engine", t.eng.name)
	t.updateStale()
	t.poll(t.ctx)
	t.solo()
}

// solo is the endpoint's own scrape loop. It hands the target to its wave
// as soon as the endpoint qualifies (see wave), and ends with the target.
func (t *target) solo() {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if t.waveReady() && t.s.joinWave(t) {
			return // the wave owns t now
		}
		if timer == nil {
			timer = time.NewTimer(t.phase())
		} else {
			timer.Reset(t.phase())
		}
		select {
		case <-t.ctx.Done():
			t.release()
			return
		case <-timer.C:
		}
		t.poll(t.ctx)
	}
}

// release ends the target's scraping for good, from whichever goroutine
// owns it.
func (t *target) release() {
	t.s.log.V(1).Info("stopped scraping endpoint", "endpoint", t.ep.String())
	if t.conn != nil {
		t.conn.close()
	}
	if t.narrow == narrowOn {
		t.s.narrowEndpoints.Add(-1)
	}
	t.s.active.Add(-1)
	t.s.loops.Done()
}

// phase is the delay until this endpoint's next scrape instant: a fixed
// offset within the current (effective) interval, on a grid shared by all
// endpoints, so that with slots > 0 endpoints of a wave wake together. An
// instant closer than an eighth of the interval is skipped: the scrape that
// just ended was late enough to stand for it.
func (t *target) phase() time.Duration { return t.phaseAt(time.Now()) }

// phaseAt is phase as seen at now.
func (t *target) phaseAt(now time.Time) time.Duration {
	iv := int64(t.s.interval())
	if t.s.slots() > 0 {
		return untilInstant(t.slot().offset(iv), iv, now)
	}
	return untilInstant(int64(t.sum%uint64(iv)), iv, now)
}

// slot is the shared instant of the endpoint (Scraper.slots > 0).
func (t *target) slot() slot {
	n := t.s.slots()
	return slot{of: n, index: int(t.sum % uint64(n))}
}

// slot is one of the interval's shared scrape instants: the index-th of of.
type slot struct{ of, index int }

// offset is the slot's instant within an interval of iv nanoseconds.
func (s slot) offset(iv int64) int64 { return int64(s.index) * (iv / int64(s.of)) }

// untilInstant is the delay from now to the next instant at offset within
// the interval grid, skipping one closer than an eighth of the interval.
func untilInstant(offset, iv int64, now time.Time) time.Duration {
	d := (offset - now.UnixNano()%iv + iv) % iv
	if d < iv/8 {
		d += iv
	}
	return time.Duration(d)
}

// mix scrambles FNV's low bits (splitmix64's finalizer): names that differ
// in matching digits, like "ep-3" on port 8003, otherwise share low bits.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// poll performs one scrape and updates health, metrics and staleness.
func (t *target) poll(ctx context.Context) {
	start := time.Now()
	page := t.s.getPage()
	defer t.s.putPage(page)
	reason, err := t.fetch(ctx, page)
	if ctx.Err() != nil {
		return // the endpoint was removed or we are shutting down: not its fault
	}
	t.record(start, page, reason, err)
}

// record finishes the scrape that began at start: it applies the fetched
// page when the fetch succeeded, then accounts for the outcome.
func (t *target) record(start time.Time, page *bytes.Buffer, reason string, err error) {
	t.lastStart, t.lastFetch = start, time.Since(start)
	if err == nil && reason == "" {
		reason, err = t.apply(page.Bytes(), t.conn.narrow, t.s.opts.Clock.Now())
	}
	t.s.tel.scrapes.Inc()
	t.s.tel.duration.Observe(time.Since(start).Seconds())
	if reason == reasonDiscarded { // a failed narrow probe: the server's state is unknown, not bad
		t.updateStale()
		return
	}
	if c := t.s.tel.errors[reason]; err != nil && c != nil {
		c.Inc()
	}
	t.setHealth(reason, err)
	t.updateStale()
}

// fetch GETs the page into buf, bounded by the scrape timeout.
func (t *target) fetch(ctx context.Context, buf *bytes.Buffer) (reason string, err error) {
	if t.connErr != nil {
		return fetchfail.Connect, fmt.Errorf("build metrics request: %w", t.connErr)
	}
	t.conn.narrow = t.wantNarrow()
	resp, err := t.conn.get(ctx, time.Now().Add(t.s.opts.Timeout))
	return t.readResponse(resp, err, buf)
}

// readResponse reads the page of a response (or reports err, the failure
// to get one) into buf, bounded by MaxPageBytes.
func (t *target) readResponse(resp *http.Response, err error, buf *bytes.Buffer) (reason string, _ error) {
	if err != nil {
		return fetchfail.Classify(err, fetchfail.Connect), fmt.Errorf("get metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.conn.done(resp, false)
		err := fmt.Errorf("get metrics: unexpected status %q", resp.Status)
		if t.conn.narrow && t.narrow == narrowProbe && refusesQuery(resp.StatusCode) {
			t.rejectNarrow(err.Error()) // the query, not the server, is at fault
			return reasonDiscarded, nil
		}
		return fetchfail.Status, err
	}
	limit := t.s.opts.MaxPageBytes
	n, err := buf.ReadFrom(io.LimitReader(resp.Body, limit+1))
	t.conn.done(resp, err == nil && n <= limit)
	if err != nil {
		return fetchfail.Classify(err, fetchfail.Read), fmt.Errorf("read metrics page: %w", err)
	}
	if n > limit {
		return fetchfail.TooLarge, fmt.Errorf("metrics page exceeds %d bytes", limit)
	}
	return "", nil
}

// apply filters, parses and publishes one page. An unchanged page (same
// wanted lines as the last applied one) skips parsing and only refreshes
// UpdateTime. On a changed page only the families whose lines changed are
// parsed (a loaded server's queue and KV gauges change on every scrape, its
// cache config and LoRA info rarely); the others keep the last parse, with
// their values patched in place when only values changed (patchValues).
//
// narrow says whether page answered a name[] query; one that lost families
// is discarded (reasonDiscarded) and the target scrapes whole pages from
// then on.
func (t *target) apply(page []byte, narrow bool, now time.Time) (reason string, err error) {
	t.filtered, t.segs = filterSegments(t.filtered[:0], t.segs[:0], page, t.eng.families)
	if t.narrow != narrowNever && t.checkNarrow(narrow, len(page)) {
		return reasonDiscarded, nil
	}
	prev := t.ep.Metrics()
	if t.havePrev && bytes.Equal(t.filtered, t.prev) {
		next := *prev
		next.UpdateTime, next.ScrapeInterval = now, t.s.interval()
		t.ep.SetMetrics(&next)
		t.lastOK = now
		t.countFieldErrors(t.failedFields)
		return "", nil
	}
	text, reused := t.changedText()
	var fams map[string]*dto.MetricFamily
	if len(text) == 0 { // every change was a value patched in place
		fams = make(map[string]*dto.MetricFamily, len(reused))
	} else {
		t.rd.Reset(text)
		fams, err = t.text.TextToMetricFamilies(&t.rd)
	}
	if err != nil {
		partial := len(text) < len(t.filtered)
		t.forgetPrev()
		if partial { // report the error as a whole-page parse words it
			return t.apply(page, narrow, now)
		}
		return fetchfail.Parse, fmt.Errorf("parse metrics page: %w", err)
	}
	for _, i := range reused {
		name := t.eng.families[i]
		if _, dup := fams[name]; dup {
			// Cannot happen with distinct segments; parse it all to be sure.
			t.forgetPrev()
			return t.apply(page, narrow, now)
		}
		fams[name] = t.prevFams[name]
	}
	next, failed, ferr := t.eng.extract(fams, prev, &t.lora)
	if t.eng.nothingRead(failed) {
		t.forgetPrev()
		return reasonNoMetrics, fmt.Errorf("no configured metric on the page: %w", ferr)
	}
	next.UpdateTime, next.ScrapeInterval = now, t.s.interval()
	t.ep.SetMetrics(&next)
	t.applyCustom(fams)
	t.lastOK = now
	t.noteFields(failed, ferr)
	t.filtered, t.prev, t.havePrev = t.prev, t.filtered, true
	t.segs, t.prevSegs, t.prevFams = t.prevSegs, t.segs, fams
	return "", nil
}

// changedText returns the part of t.filtered to parse and the families
// to take from the last applied page's parse: those whose lines are
// byte-for-byte the same, and those patchValues brought up to date. It
// returns the whole page when that page cannot be trusted: none applied
// yet, a family split into several runs, or a line the filter kept only
// for the parser to reject.
func (t *target) changedText() ([]byte, []int) {
	if !t.havePrev || t.prevFams == nil || !distinctFamilies(t.segs) || !distinctFamilies(t.prevSegs) {
		return t.filtered, nil
	}
	t.changed, t.reused = t.changed[:0], t.reused[:0]
	for _, sg := range t.segs {
		cur := t.filtered[sg.start:sg.end]
		if p, ok := findSegment(t.prevSegs, sg.family); ok {
			prev := t.prev[p.start:p.end]
			if fam, parsed := t.prevFams[t.eng.families[sg.family]]; parsed && (bytes.Equal(cur, prev) || patchValues(fam, cur, prev)) {
				t.reused = append(t.reused, sg.family)
				continue
			}
		}
		t.changed = append(t.changed, cur...)
	}
	return t.changed, t.reused
}

// forgetPrev drops the last applied page after a failure, so the next page
// is compared with nothing and parsed whole.
func (t *target) forgetPrev() {
	t.havePrev, t.prevFams = false, nil
}

// distinctFamilies reports whether every run is of a wanted family and no
// family has two runs.
func distinctFamilies(segs []segment) bool {
	var seen uint64
	for _, sg := range segs {
		if sg.family < 0 || sg.family >= 64 || seen&(1<<sg.family) != 0 {
			return false
		}
		seen |= 1 << sg.family
	}
	return true
}

func findSegment(segs []segment, family int) (segment, bool) {
	for _, sg := range segs {
		if sg.family == family {
			return sg, true
		}
	}
	return segment{}, false
}

func (t *target) countFieldErrors(failed fieldSet) {
	for f := range numFields {
		if failed&(1<<f) != 0 {
			t.s.tel.fieldErrors[f].Inc()
		}
	}
}

// noteFields counts unreadable fields and logs only when the set changes.
func (t *target) noteFields(failed fieldSet, err error) {
	t.countFieldErrors(failed)
	if failed == t.failedFields {
		return
	}
	t.failedFields = failed
	if failed == 0 {
		t.s.log.Info("all metric fields readable again", "endpoint", t.ep.String())
		return
	}
	t.s.log.Error(err, "metric fields unavailable, keeping their previous values",
		"endpoint", t.ep.String(), "engine", t.eng.name, "fields", failed.names())
}

// setHealth logs transitions only: healthy -> failing (with the reason) and
// failing -> healthy, never once per scrape.
func (t *target) setHealth(reason string, err error) {
	switch {
	case err != nil && !t.failing:
		t.failing = true
		t.s.log.Error(err, "metrics scrape failing", "endpoint", t.ep.String(), "reason", reason)
	case err == nil && t.failing:
		t.failing = false
		t.s.log.Info("metrics scrape recovered", "endpoint", t.ep.String())
	}
	t.noteFailure(reason, err)
}

// noteFailure keeps the endpoint's run of failed scrapes up to date for
// the debug page (a new value per failed scrape; nothing while scrapes
// succeed).
func (t *target) noteFailure(reason string, err error) {
	prev := t.ep.ScrapeFailure()
	if err == nil {
		if prev != nil {
			t.ep.SetScrapeFailure(nil)
		}
		return
	}
	f := &endpoint.ScrapeFailure{Reason: reason, Error: err.Error(), Since: t.s.opts.Clock.Now(), Count: 1}
	if prev != nil {
		f.Since, f.Count = prev.Since, prev.Count+1
	}
	t.ep.SetScrapeFailure(f)
}

func (t *target) updateStale() {
	now := t.s.opts.Clock.Now()
	stale := t.lastOK.IsZero() || now.Sub(t.lastOK) > t.s.opts.StalenessThreshold
	if t.ep.SetStale(stale) {
		t.s.log.V(1).Info("endpoint metrics freshness changed", "endpoint", t.ep.String(), "stale", stale)
	}
}
