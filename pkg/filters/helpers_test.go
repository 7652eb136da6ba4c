package filters

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

var ctx = context.Background()

// ep returns an endpoint named name on addr:8000 with labels and, when m is
// not nil, metrics m.
func ep(name, addr string, lbls map[string]string, m *endpoint.Metrics) *endpoint.Endpoint {
	e := endpoint.New(endpoint.Spec{Name: name, Address: addr, Port: 8000, Labels: lbls})
	if m != nil {
		e.SetMetrics(m)
		e.SetStale(false) // as the scraper does after a successful scrape
	}
	return e
}

// load returns metrics scraped 10ms before plugintest.Epoch.
func load(queue int, kv float64) *endpoint.Metrics {
	return &endpoint.Metrics{WaitingQueueSize: queue, KVCacheUsagePercent: kv, UpdateTime: plugintest.Epoch.Add(-10 * time.Millisecond)}
}

// names lists endpoint names, the form test expectations use.
func names(eps []*endpoint.Endpoint) []string {
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e.Name
	}
	return out
}

// wantErr checks that err is nil when want is empty and otherwise mentions
// every comma-separated fragment of want.
func wantErr(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("got no error, want one mentioning %q", want)
	}
	for _, frag := range strings.Split(want, "|") {
		if !strings.Contains(err.Error(), frag) {
			t.Errorf("error %q does not mention %q", err, frag)
		}
	}
}

// benchFilter runs f over 100 plugintest endpoints.
func benchFilter(b *testing.B, f scheduler.Filter, req *scheduler.Request) {
	eps := plugintest.Endpoints(100, 1)
	state := plugintest.State(1)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		f.Filter(ctx, state, req, eps)
	}
}
