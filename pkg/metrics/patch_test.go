package metrics

import (
	"math"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestPatchValues checks which changes the in-place value patch takes on
// and that, when it does, the family equals a fresh parse of the new text.
func TestPatchValues(t *testing.T) {
	t.Parallel()
	const gauge = "# TYPE g gauge\ng{a=\"x\"} 1\ng{a=\"y z\"} 2\n"
	cases := []struct {
		name, prev, cur string
		ok              bool
	}{
		{"values", gauge, "# TYPE g gauge\ng{a=\"x\"} 5\ng{a=\"y z\"} 2.5e3\n", true},
		{"special floats", gauge, "# TYPE g gauge\ng{a=\"x\"} NaN\ng{a=\"y z\"} -Inf\n", true},
		{"tab before the value", "# TYPE g gauge\ng{a=\"x\"}\t1\n", "# TYPE g gauge\ng{a=\"x\"}\t7\n", true},
		{"bare name", "# TYPE c counter\nc 1\n", "# TYPE c counter\nc 2\n", true},
		{"untyped", "u{a=\"b\"} 1\n", "u{a=\"b\"} 3\n", true},
		{"timestamp", "g{a=\"x\"} 1 100\n", "g{a=\"x\"} 1 200\n", false},
		{"timestamp added", "g{a=\"x\"} 1\n", "g{a=\"x\"} 1 200\n", false},
		{"label changed", gauge, "# TYPE g gauge\ng{a=\"w\"} 1\ng{a=\"y z\"} 2\n", false},
		{"series added", gauge, gauge + "g{a=\"q\"} 3\n", false},
		{"series removed", gauge, "# TYPE g gauge\ng{a=\"x\"} 1\n", false},
		{"type changed", gauge, "# TYPE g counter\ng{a=\"x\"} 1\ng{a=\"y z\"} 2\n", false},
		{"hex float", gauge, "# TYPE g gauge\ng{a=\"x\"} 0x1p3\ng{a=\"y z\"} 2\n", false},
		{"underscore", gauge, "# TYPE g gauge\ng{a=\"x\"} 1_0\ng{a=\"y z\"} 2\n", false},
		{"not a number", gauge, "# TYPE g gauge\ng{a=\"x\"} one\ng{a=\"y z\"} 2\n", false},
		{"trailing blank", gauge, "# TYPE g gauge\ng{a=\"x\"} 1 \ng{a=\"y z\"} 2\n", false},
		{"histogram", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
			"# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			prev := parseOne(t, c.prev)
			before := prev.String()
			got := patchValues(prev, []byte(c.cur), []byte(c.prev))
			if got != c.ok {
				t.Fatalf("patchValues = %v, want %v", got, c.ok)
			}
			if !got {
				if prev.String() != before {
					t.Fatalf("a refused patch changed the family:\n%s\nwas\n%s", prev, before)
				}
				return
			}
			want := parseOne(t, c.cur)
			if !sameFamily(prev, want) {
				t.Fatalf("patched family\n%s\ndiffers from a parse of the new text\n%s", prev, want)
			}
		})
	}
}

func parseOne(t *testing.T, text string) *dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil || len(fams) != 1 {
		t.Fatalf("parse %q: %d families, %v", text, len(fams), err)
	}
	for _, f := range fams {
		return f
	}
	return nil
}

// sameFamily compares two families' structure and values, NaN equal to NaN.
func sameFamily(a, b *dto.MetricFamily) bool {
	if a.GetName() != b.GetName() || a.GetType() != b.GetType() || len(a.Metric) != len(b.Metric) {
		return false
	}
	for i := range a.Metric {
		ma, mb := a.Metric[i], b.Metric[i]
		if len(ma.Label) != len(mb.Label) {
			return false
		}
		for j := range ma.Label {
			if ma.Label[j].GetName() != mb.Label[j].GetName() || ma.Label[j].GetValue() != mb.Label[j].GetValue() {
				return false
			}
		}
		va, vb := *valueOf(ma), *valueOf(mb)
		if va != vb && !(math.IsNaN(va) && math.IsNaN(vb)) {
			return false
		}
	}
	return true
}
