package scorers

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// acEndpoints returns endpoints whose accelerator-capability label is
// ranges[i] ("-" for no label), named by their range.
func acEndpoints(ranges ...string) []*endpoint.Endpoint {
	return rangeEndpoints(AcceleratorCapabilityLabel, ranges...)
}

// TestAcceleratorCapabilityScores: labelled endpoints score by the range
// formula (TestRangeScore), unlabelled ones 0.5 and malformed ones 0.
func TestAcceleratorCapabilityScores(t *testing.T) {
	t.Parallel()
	s := mustBuild[*AcceleratorCapability](t, AcceleratorCapabilityRegistration(), "", nil)
	eps := acEndpoints("0-2048", " 0 - 2048 ", "4096-8192", "-", "abc", "5-1", "1-2-3", "-1-5", "1--5", "+1-5", "", "2048")
	want := []float64{rangeScore(500, 0, 2048), rangeScore(500, 0, 2048), rangeScore(500, 4096, 8192), 0.5, 0, 0, 0, 0, 0, 0, 0, 0}
	if d := cmp.Diff(want, s.Score(scCtx, scState(), scRequest(4*500, nil), eps), approx); d != "" {
		t.Errorf("scores (-want +got)\n%s", d)
	}
}

func TestAcceleratorCapabilityFilter(t *testing.T) {
	t.Parallel()
	checkRangeFilter(t, AcceleratorCapabilityRegistration(), acEndpoints("0-2048", "2049-8192", "-", "abc", "5-1", "8192-8192"), []rangeFilterCase{
		{name: "filtering off keeps all", params: ``, tokens: 5000, want: []string{"0-2048", "2049-8192", "-", "abc", "5-1", "8192-8192"}},
		{name: "in range and unlabelled stay, malformed go", params: `{"enableFiltering":true}`, tokens: 5000, want: []string{"2049-8192", "-"}},
		{name: "size at max", params: `{"enableFiltering":true}`, tokens: 2048, want: []string{"0-2048", "-"}},
		{name: "size at min", params: `{"enableFiltering":true}`, tokens: 2049, want: []string{"2049-8192", "-"}},
		{name: "zero width", params: `{"enableFiltering":true}`, tokens: 8192, want: []string{"2049-8192", "-", "8192-8192"}},
		{name: "beyond every range", params: `{"enableFiltering":true}`, tokens: 200000, want: []string{"-"}},
	})
}

// TestAcceleratorCapabilityCountsTokens: a token-producer's count sizes
// the request; without one the bytes/4 estimate does.
func TestAcceleratorCapabilityCountsTokens(t *testing.T) {
	t.Parallel()
	s := mustBuild[*AcceleratorCapability](t, AcceleratorCapabilityRegistration(), `{"enableFiltering":true}`, nil)
	eps := acEndpoints("0-2048", "2049-8192")
	req := scRequest(4*1500, nil) // estimate 1500
	tests := []struct {
		name       string
		tokens     int // -1: no token-producer ran
		wantKept   []string
		wantScores []float64
	}{
		{name: "estimate", tokens: -1, wantKept: []string{"0-2048"}, wantScores: []float64{0.7628979135541167, 0.19367333763718528}},
		{name: "token count", tokens: 3000, wantKept: []string{"2049-8192"}, wantScores: []float64{0.15368852459016394, 0.781026962657501}},
		{name: "a count of 0 is a count", tokens: 0, wantKept: []string{"0-2048"}, wantScores: []float64{0.3 + 0.7*(0.7/1.2048+0.3), 0.3 / 3.049}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := scState()
			if tc.tokens >= 0 {
				scheduler.PromptTokens.Set(st, tc.tokens)
			}
			if d := cmp.Diff(tc.wantKept, endpointNames(s.Filter(scCtx, st, req, eps))); d != "" {
				t.Errorf("kept (-want +got)\n%s", d)
			}
			if d := cmp.Diff(tc.wantScores, s.Score(scCtx, st, req, eps), approx); d != "" {
				t.Errorf("scores (-want +got)\n%s", d)
			}
		})
	}
	if got := requestTokens(nil, nil); got != 0 {
		t.Errorf("no state, no request: %d tokens, want 0", got)
	}
}

// TestAcceleratorCapabilityLogsMalformed: a malformed label is logged, but
// at most once per interval however many requests and endpoints see it.
func TestAcceleratorCapabilityLogsMalformed(t *testing.T) {
	t.Parallel()
	var log logCapture
	clock := newSCClock()
	s, err := NewAcceleratorCapability("ac", AcceleratorCapabilityParams{Label: "range", EnableFiltering: true}, &scheduler.Handle{Log: log.logger(), Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	eps := rangeEndpoints("range", "big", "1-x", "0-100")
	scoreAndFilterConcurrently(s, eps)
	if l := log.Lines(); len(l) != 1 || !strings.Contains(l[0], `"value"="big"`) || !strings.Contains(l[0], `"malformed"=2`) {
		t.Fatalf("log lines %q, want one naming the first malformed label and the count", l)
	}
	clock.Advance(acWarnEvery - time.Second)
	s.Score(scCtx, scState(), scRequest(40, nil), eps)
	clock.Advance(time.Second)
	s.Score(scCtx, scState(), scRequest(40, nil), eps[2:]) // nothing malformed: nothing to log
	s.Filter(scCtx, scState(), scRequest(40, nil), eps)
	if l := log.Lines(); len(l) != 2 {
		t.Errorf("%d log lines after an interval, want 2: %q", len(l), l)
	}
}
