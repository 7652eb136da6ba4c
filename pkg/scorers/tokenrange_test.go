package scorers

import (
	"fmt"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// rangeEndpoints returns endpoints whose label is ranges[i] ("-" for no
// label), named by their range.
func rangeEndpoints(label string, ranges ...string) []*endpoint.Endpoint {
	out := make([]*endpoint.Endpoint, len(ranges))
	for i, r := range ranges {
		labels := map[string]string{}
		if r != "-" {
			labels[label] = r
		}
		out[i] = endpoint.New(endpoint.Spec{Name: r, Address: fmt.Sprintf("10.7.0.%d", i+1), Port: 8000, Labels: labels})
	}
	return out
}

func endpointNames(eps []*endpoint.Endpoint) []string {
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e.Name
	}
	return out
}

// rangeFilterCase: with params, a request of tokens (4×tokens bytes)
// keeps the endpoints named want.
type rangeFilterCase struct {
	name, params string
	tokens       int
	want         []string
}

// checkRangeFilter runs a range plugin's filter cases over eps.
func checkRangeFilter(t *testing.T, reg scheduler.Registration, eps []*endpoint.Endpoint, tests []rangeFilterCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := mustBuild[scheduler.Filter](t, reg, tc.params, nil)
			got := f.Filter(scCtx, scState(), scRequest(4*tc.tokens, nil), eps)
			if d := cmp.Diff(tc.want, endpointNames(got)); d != "" {
				t.Errorf("kept (-want +got)\n%s", d)
			}
		})
	}
}

// logCapture records the lines of its logger.
type logCapture struct {
	mu    sync.Mutex
	lines []string
}

func (c *logCapture) logger() logr.Logger {
	return funcr.New(func(_, args string) { c.mu.Lock(); c.lines = append(c.lines, args); c.mu.Unlock() }, funcr.Options{})
}

// Lines returns a copy of the lines logged so far.
func (c *logCapture) Lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

// scoreAndFilterConcurrently scores and filters eps from 8 goroutines at
// once, as concurrent requests do.
func scoreAndFilterConcurrently(s scorerFilter, eps []*endpoint.Endpoint) {
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Score(scCtx, scState(), scRequest(40, nil), eps)
			s.Filter(scCtx, scState(), scRequest(40, nil), eps)
		}()
	}
	wg.Wait()
}

// scorerFilter is a plugin that both scores and filters.
type scorerFilter interface {
	scheduler.Scorer
	scheduler.Filter
}

// TestRangeConformance runs the shared checks on both range plugins, as
// scorers and as filters.
func TestRangeConformance(t *testing.T) {
	t.Parallel()
	req := plugintest.Request("m", 4000)
	for _, reg := range []scheduler.Registration{ContextLengthRegistration(), AcceleratorCapabilityRegistration()} {
		for _, params := range []string{``, `{"enableFiltering":true}`} {
			s := mustBuild[scorerFilter](t, reg, params, nil)
			plugintest.Scorer(t, s, req)
			plugintest.Filter(t, s, req)
		}
	}
}

// TestRangeScore checks the formula both range plugins score with;
// expected values were computed independently.
func TestRangeScore(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		n, lo, hi int
		want      float64
	}{
		{name: "in range, narrow", n: 500, lo: 0, hi: 2048, want: 0.8654369760541167},
		{name: "in range, wider scores lower", n: 500, lo: 0, hi: 8192, want: 0.7665317816553979},
		{name: "size at min: most headroom", n: 2048, lo: 2048, hi: 8192, want: 0.8135183349851338},
		{name: "size at max: no headroom", n: 2048, lo: 0, hi: 2048, want: 0.7067065073041168},
		{name: "zero width holding the size", n: 1000, lo: 1000, hi: 1000, want: 1},
		{name: "zero width missing it", n: 1001, lo: 1000, hi: 1000, want: 0.3 / 1.001},
		{name: "above the range", n: 9000, lo: 0, hi: 8192, want: 0.165929203539823},
		{name: "further above scores lower", n: 9000, lo: 0, hi: 2048, want: 0.3 / (1 + 6952.0/1000)},
		{name: "below the range", n: 100, lo: 2048, hi: 8192, want: 0.10176390773405698},
	}
	for _, tc := range tests {
		if d := cmp.Diff(tc.want, rangeScore(tc.n, tc.lo, tc.hi), approx); d != "" {
			t.Errorf("%s: rangeScore(%d, %d, %d) (-want +got)\n%s", tc.name, tc.n, tc.lo, tc.hi, d)
		}
	}
}

// TestParseRange covers the "min-max" label format both range plugins
// read.
func TestParseRange(t *testing.T) {
	t.Parallel()
	type bounds struct {
		Lo, Hi int
		OK     bool
	}
	tests := []struct {
		in   string
		want bounds
	}{
		{in: "0-2048", want: bounds{0, 2048, true}},
		{in: "2048-2048", want: bounds{2048, 2048, true}},
		{in: " 0 - 2048 ", want: bounds{0, 2048, true}},
		{in: "\t16-32\n", want: bounds{16, 32, true}},
		{in: "007-8", want: bounds{7, 8, true}},
		{in: "abc"},
		{in: "5-1"},
		{in: "1-2-3"},
		{in: "-1-5"},
		{in: "1--5"},
		{in: "0--0"},
		{in: "+1-5"},
		{in: "1-+5"},
		{in: "1.5-3"},
		{in: "8k-16k"},
		{in: "1 0-20"},
		{in: "-"},
		{in: ""},
		{in: "2048"},
		{in: "0-99999999999999999999"},
	}
	for _, tc := range tests {
		lo, hi, ok := parseRange(tc.in)
		if d := cmp.Diff(tc.want, bounds{lo, hi, ok}); d != "" {
			t.Errorf("parseRange(%q) (-want +got)\n%s", tc.in, d)
		}
	}
}
