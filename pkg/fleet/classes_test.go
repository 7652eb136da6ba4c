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
	for in, wantErr := range map[string]string{
		"a:1":         "want name:share:priority",
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
