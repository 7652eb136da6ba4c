package fleet

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseClasses(t *testing.T) {
	t.Parallel()
	got, err := ParseClasses(" critical:1:3, batch:3:-1 ")
	if err != nil {
		t.Fatal(err)
	}
	want := []Class{{Name: "critical", Share: 0.25, Priority: 3}, {Name: "batch", Share: 0.75, Priority: -1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("classes (-want +got):\n%s", diff)
	}
	got, err = ParseClasses("critical:1:3:250:40,batch:1:-1:500")
	if err != nil {
		t.Fatal(err)
	}
	want = []Class{{Name: "critical", Share: 0.5, Priority: 3, TTFTSLOMs: 250, TPOTSLOMs: 40}, {Name: "batch", Share: 0.5, Priority: -1, TTFTSLOMs: 500}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("classes with SLOs (-want +got):\n%s", diff)
	}
	got, err = ParseClasses("interactive:0.2:0:250ms,batch:0.8:0:10s:1.5ms")
	if err != nil {
		t.Fatal(err)
	}
	want = []Class{{Name: "interactive", Share: 0.2, Priority: 0, TTFTSLOMs: 250}, {Name: "batch", Share: 0.8, Priority: 0, TTFTSLOMs: 10000, TPOTSLOMs: 1.5}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("classes with SLOs as durations (-want +got):\n%s", diff)
	}
	got, _ = ParseClasses("critical:1:3:250:40")
	if diff := cmp.Diff(map[string]string{"x-slo-ttft-ms": "250", "x-slo-tpot-ms": "40"}, got[0].sloHeaders()); diff != "" {
		t.Errorf("SLO headers (-want +got):\n%s", diff)
	}
	if h := (Class{Name: "x"}).sloHeaders(); h != nil {
		t.Errorf("no SLO: headers %v", h)
	}
	for in, wantErr := range map[string]string{
		"a:1":         "want name:share:priority",
		"a:1:1:2:3:4": "want name:share:priority",
		"a:1:1:soon":  `SLO "soon"`,
		"a:1:1:-5":    "milliseconds >= 0",
		"a:1:1:-5ms":  "milliseconds >= 0",
		"a:1:1:5m0x":  "duration such as 250ms",
		"a:1:1:1:NaN": `SLO "NaN"`,
		"a:x:1":       "share",
		"a:1:high":    "priority",
		"a:0:1":       "share must be > 0",
		"a:1:1,a:1:2": "distinct",
		":1:1":        "non-empty",
	} {
		if _, err := ParseClasses(in); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%q: error %v, want %q", in, err, wantErr)
		}
	}
}
