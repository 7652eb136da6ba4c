package metrics

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Narrow pages. Prometheus's own client libraries render only the
// families named in name[] query parameters: Python's prometheus_client in
// the ASGI and WSGI apps it provides (which recent vLLM mounts at /metrics;
// other versions and servers route /metrics elsewhere and ignore the
// query) and client_golang's promhttp. A vLLM page is mostly histogram
// buckets the EPP never reads, and a Python server renders it on the event
// loop that also streams tokens, 20 times a second per EPP at the default
// interval. So after a whole page, a target asks for the families its
// engine reads, and keeps doing so only if the answer is trustworthy:
// every family the whole page had is there, and the page is clearly
// smaller. Otherwise (a server that ignores the query; one whose registry
// cannot be filtered and answers without the families, as
// prometheus_client does in multiprocess mode; one that refuses the query)
// the target goes back to whole pages, and a doubtful answer is neither
// applied nor counted as a failure. It tries again after narrowRetry, so a
// server upgraded in place, or one that was briefly unwell when probed,
// is not scraped whole for good; a server that still cannot filter costs
// one discarded answer per retry.

// narrowState is where a target stands with narrow pages.
type narrowState uint8

const (
	narrowNever    narrowState = iota // disabled, or the path has a query of its own
	narrowUntried                     // the next whole page is the reference
	narrowProbe                       // the next request asks for the families
	narrowOn                          // verified: every request asks for them
	narrowRejected                    // the server did not answer it well: whole pages only
)

// narrowQuery is the name[] query for families: each family, and for a
// sample-suffixed name also its base, since client_golang filters by family
// name (x for x_bucket) where prometheus_client filters by sample name.
func narrowQuery(families []string) string {
	var names []string
	for _, f := range families {
		names = append(names, f)
		for _, suffix := range []string{"_bucket", "_sum", "_count", "_total"} {
			if base, ok := strings.CutSuffix(f, suffix); ok && base != "" && !slices.Contains(families, base) {
				names = append(names, base)
			}
		}
	}
	return url.Values{"name[]": names}.Encode()
}

// wantNarrow reports whether the next request asks for the families only;
// a target rejected long enough ago starts over (see narrowRetry).
func (t *target) wantNarrow() bool {
	if t.narrow == narrowRejected && !t.s.opts.Clock.Now().Before(t.narrowRetryAt) {
		t.narrow = narrowUntried
	}
	return t.narrow == narrowProbe || t.narrow == narrowOn
}

// refusesQuery reports whether status, answering a probe, says the query
// is unwelcome rather than the server busy: any 4xx but 408 and 429.
func refusesQuery(status int) bool {
	return status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
}

// narrowRetry is how long a target scrapes whole pages after narrow pages
// failed before it probes again.
const narrowRetry = 10 * time.Minute

// narrowMinPage is the smallest whole page worth narrowing: below it there
// is little to save, and a page that small cannot tell a server that
// ignores the query from one that honours it.
const narrowMinPage = 4 << 10

// presentFamilies is the set of wanted families with lines on the page
// last filtered into t.segs; clean is false when a line was kept only for
// the parser to reject.
func (t *target) presentFamilies() (set uint64, clean bool) {
	for _, sg := range t.segs {
		if sg.family < 0 || sg.family >= 64 {
			return set, false
		}
		set |= 1 << sg.family
	}
	return set, true
}

// checkNarrow updates the narrow state with a page of size bytes just
// filtered into t.segs, fetched narrow or not. It reports whether the page
// must not be applied: a narrow answer that lost families. A broken page
// changes nothing here and fails as any other would.
func (t *target) checkNarrow(narrow bool, size int) (discard bool) {
	present, clean := t.presentFamilies()
	switch {
	case !clean:
	case !narrow:
		if t.narrow == narrowUntried && present != 0 && size >= narrowMinPage {
			t.wholeFamilies, t.wholeBytes, t.narrow = present, size, narrowProbe
		}
	case t.narrow == narrowProbe && size*4 > t.wholeBytes*3:
		// A whole page: correct, but asking again gains nothing.
		t.rejectNarrow("the server ignores the name[] query")
	case present&t.wholeFamilies != t.wholeFamilies:
		t.rejectNarrow("families missing from the filtered page")
		return true
	case t.narrow == narrowProbe:
		t.narrow = narrowOn
		t.s.narrowEndpoints.Add(1)
		t.s.log.V(1).Info("metrics server filters its page to the families read", "endpoint", t.ep.String(),
			"bytes", size, "wholePageBytes", t.wholeBytes)
	}
	return false
}

// rejectNarrow returns the target to whole pages until narrowRetry passes.
func (t *target) rejectNarrow(why string) {
	if t.narrow == narrowOn {
		t.s.narrowEndpoints.Add(-1)
	}
	t.narrow = narrowRejected
	t.narrowRetryAt = t.s.opts.Clock.Now().Add(narrowRetry)
	t.s.log.V(1).Info("scraping whole metrics pages", "endpoint", t.ep.String(), "reason", why, "retryIn", narrowRetry)
}
