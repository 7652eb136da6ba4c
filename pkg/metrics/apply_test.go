package metrics

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestApplyReusesUnchangedFamilies checks the partial parse against a full
// parse of every page: a sequence of pages whose wanted families change,
// vanish, split or break at random must publish exactly the same metrics
// and errors either way.
func TestApplyReusesUnchangedFamilies(t *testing.T) {
	t.Parallel()
	for _, engine := range []string{EngineVLLM, EngineSGLang, EngineTRTLLMServe, EngineTritonTensorRTLLM} {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			page, err := os.ReadFile("testdata/" + engine + ".txt")
			if err != nil {
				t.Fatal(err)
			}
			labels := map[string]string{EngineLabelGIE: engine}
			inc := testTarget(t, "127.0.0.1:1", labels)
			full := testTarget(t, "127.0.0.1:1", labels)
			rng := rand.New(rand.NewPCG(7, uint64(len(engine))))
			now := time.Unix(1_700_000_000, 0)
			var partial int
			for step := range 300 {
				p, what := mutatePage(rng, page, inc.eng.families)
				now = now.Add(50 * time.Millisecond)
				full.forgetPrev() // always a whole-page parse
				_, wantErr := full.apply(p, false, now)
				if inc.havePrev && inc.prevFams != nil && !bytes.Equal(inc.prev, filterPage(nil, p, inc.eng.families)) {
					partial++
				}
				_, gotErr := inc.apply(p, false, now)
				if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
					t.Fatalf("step %d (%s): error %v, full parse says %v", step, what, gotErr, wantErr)
				}
				if diff := cmp.Diff(*full.ep.Metrics(), *inc.ep.Metrics()); diff != "" {
					t.Fatalf("step %d (%s): metrics differ from a full parse (-full +partial):\n%s", step, what, diff)
				}
			}
			if partial < 100 {
				t.Errorf("only %d of 300 pages took the partial path", partial)
			}
		})
	}
}

// oddValues are values mutatePage sometimes writes instead of a small
// integer, some of which only a parser can judge (the in-place value patch
// must leave those to it): special floats, forms expfmt rejects, a
// timestamp after the value, whitespace around it.
var oddValues = []string{"0.25", "1e3", "-7",
	"NaN", "+Inf", "-Inf", "0x1p3", "1_0", "", "x", "1 1700000000000", "2\t", "3 ", "\t4"}

// mutatePage returns a variant of page: usually some wanted samples with
// new values, sometimes a family removed, repeated at the end (split into
// two runs), or a broken line.
func mutatePage(rng *rand.Rand, page []byte, families []string) ([]byte, string) {
	lines := strings.Split(string(page), "\n")
	wanted := func(l string) int {
		for i, f := range families {
			if strings.HasPrefix(l, f+"{") || strings.HasPrefix(l, f+" ") {
				return i
			}
		}
		return -1
	}
	what := "values"
	for i, l := range lines {
		if wanted(l) >= 0 && rng.IntN(2) == 0 {
			if sp := strings.LastIndexByte(l, ' '); sp > 0 {
				v := fmt.Sprint(rng.IntN(5))
				if rng.IntN(20) == 0 {
					v = oddValues[rng.IntN(len(oddValues))]
				}
				lines[i] = l[:sp+1] + v
			}
		}
	}
	switch rng.IntN(10) {
	case 0:
		drop := rng.IntN(len(families))
		what = "dropped " + families[drop]
		kept := lines[:0]
		for _, l := range lines {
			if wanted(l) != drop {
				kept = append(kept, l)
			}
		}
		lines = kept
	case 1:
		for _, l := range lines {
			if wanted(l) >= 0 {
				what = "repeated " + l
				lines = append(lines, l)
				break
			}
		}
	case 2:
		what = "garbage"
		lines = append(lines, "garbage")
	}
	return []byte(strings.Join(lines, "\n")), what
}
