package metrics

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/openepp/openepp/pkg/endpoint"
)

// fuzzEngines are the built-in engines a fuzz input's first byte picks from.
var fuzzEngines = []string{EngineVLLM, EngineSGLang, EngineTRTLLMServe, EngineTritonTensorRTLLM}

// addPageSeeds adds, for every engine, an excerpt of its test page (the
// wanted families among some of the rest), only its wanted families (what
// a narrow answer holds), and the pages of the filter tests. Excerpts
// rather than whole pages: the fuzzer minimizes every input that finds new
// code, which takes it most of a minute on a 28 KB page. One vLLM excerpt
// is over narrowMinPage, so that narrow pages are probed.
func addPageSeeds(f *testing.F, add func(engine uint8, page []byte)) {
	for i, name := range fuzzEngines {
		page := readPage(f, name+".txt")
		families := fuzzTarget(f, uint8(i)).eng.families
		add(uint8(i), pageExcerpt(page, families, 1<<10))
		add(uint8(i), onlyFamilies(page, families))
		if name == EngineVLLM {
			add(uint8(i), pageExcerpt(page, families, narrowMinPage))
		}
	}
	for _, page := range []string{
		"# HELP a:x help text\n# TYPE a:x gauge\na:x{l=\"1\"} 1\n# TYPE c counter\nc 3\n# some comment\nb 4\n",
		"vllm:num_requests_waiting 1",
		"\n  \n  vllm:num_requests_waiting 1\n\t# TYPE vllm:num_requests_waiting gauge\n",
		"garbage\n",
		"{\"vllm:num_requests_waiting\",l=\"1\"} 1\n{\"z\"} 2\n# TYPE \"vllm:num_requests_waiting\" gauge\n",
		"{\"b\\\"q\"} 1\n",
		"vllm:num_requests_waiting 1\r\nc 2\r\n",
		"# TYPE vllm:num_requests_waiting histogram\nvllm:num_requests_waiting_bucket{le=\"+Inf\"} 1\nvllm:num_requests_waiting_count 1\n",
		"vllm:num_requests_waiting{a=\"1\"} 2 1700000000000\nvllm:num_requests_waiting{a=\"2\"} 3 1700000000001\n",
		"vllm:lora_requests_info{running_lora_adapters=\"a, b\",max_lora=\"2.0\"} 5\nvllm:kv_cache_usage_perc 1.0000001\n",
		"vllm:num_requests_waiting 1\nvllm:lora_adapter_loaded{adapter_name=\"a\",level=\"gpu\",pinned=\"false\"} 1\n" +
			"vllm:lora_adapter_loaded{adapter_name=\"b\",level=\"disk\"} 1\nvllm:num_gpu_loaded_lora_adapters{model_name=\"m\"} 1\n",
	} {
		add(0, []byte(page))
	}
}

// pageExcerpt keeps every line of page that mentions one of families and,
// in page order, other lines up to budget bytes of them.
func pageExcerpt(page []byte, families []string, budget int) []byte {
	var out []byte
	for _, line := range bytes.SplitAfter(page, []byte("\n")) {
		wanted := slices.ContainsFunc(families, func(f string) bool { return bytes.Contains(line, []byte(f)) })
		if wanted || budget > 0 {
			out = append(out, line...)
		}
		if !wanted {
			budget -= len(line)
		}
	}
	return out
}

// fuzzTarget is a fresh scrape target of the engine the byte picks.
func fuzzTarget(tb testing.TB, engine uint8) *target {
	name := fuzzEngines[int(engine)%len(fuzzEngines)]
	return testTarget(tb, "127.0.0.1:1", map[string]string{EngineLabelGIE: name})
}

// FuzzScrapePage checks the scrape path on any page text: apply never
// panics and either publishes metrics or returns an error with a reason;
// and when the whole page parses, filtering it first changes nothing the
// engine reads: the wanted families of the filtered page give the same
// fields, and the same unreadable ones, as the whole page's parse.
func FuzzScrapePage(f *testing.F) {
	addPageSeeds(f, func(engine uint8, page []byte) { f.Add(engine, page) })
	now := time.Unix(1_700_000_000, 0)
	f.Fuzz(func(t *testing.T, engine uint8, page []byte) {
		tg := fuzzTarget(t, engine)
		reason, err := tg.apply(page, false, now)
		switch {
		case err != nil && (reason == "" || err.Error() == ""):
			t.Fatalf("error %q with reason %q", err, reason)
		case err == nil && (reason != "" || !tg.ep.Metrics().UpdateTime.Equal(now)):
			t.Fatalf("success with reason %q published %+v", reason, tg.ep.Metrics())
		case err == nil:
			checkNarrowAnswer(t, tg, page, now)
		}
		whole, werr := parsePage(page)
		if werr != nil {
			return // a broken page may still have readable wanted families
		}
		filtered, ferr := parsePage(filterPage(nil, page, tg.eng.families))
		if ferr != nil {
			t.Fatalf("the whole page parses but the filtered one fails: %v\n%q", ferr, page)
		}
		want, wantFailed, _ := tg.eng.extract(whole, &endpoint.Metrics{}, &loraCache{})
		got, gotFailed, _ := tg.eng.extract(filtered, &endpoint.Metrics{}, &loraCache{})
		if diff := cmp.Diff(want, got); diff != "" || gotFailed != wantFailed {
			t.Fatalf("filtered page reads differently (-whole +filtered):\n%s\nunreadable fields %v, whole page %v\npage %q",
				diff, gotFailed.names(), wantFailed.names(), page)
		}
		if tg.eng.nothingRead(wantFailed) {
			if err == nil {
				t.Fatalf("no field readable, yet apply succeeded: %q", page)
			}
			return
		}
		if err != nil {
			t.Fatalf("apply: %v, though the whole page parses and has fields %v unreadable only", err, wantFailed.names())
		}
		published := *tg.ep.Metrics()
		published.UpdateTime, published.ScrapeInterval = want.UpdateTime, want.ScrapeInterval
		if diff := cmp.Diff(want, published); diff != "" {
			t.Fatalf("published metrics differ from the whole page's (-whole +published):\n%s", diff)
		}
	})
}

// checkNarrowAnswer follows a whole page that tg applied with the answer
// of a server that honours name[] perfectly, the filtered page: it must not
// be discarded as a narrow page that lost families, and reads the same.
// Filtering it again changes nothing.
func checkNarrowAnswer(t *testing.T, tg *target, page []byte, now time.Time) {
	t.Helper()
	want := *tg.ep.Metrics()
	narrow := filterPage(nil, page, tg.eng.families)
	if again := filterPage(nil, narrow, tg.eng.families); !bytes.Equal(again, narrow) {
		t.Fatalf("filtering twice changes the page:\n%q\nthen\n%q", narrow, again)
	}
	later := now.Add(time.Second)
	if reason, err := tg.apply(narrow, true, later); reason != "" || err != nil {
		t.Fatalf("a perfect narrow answer: %q %v\npage %q", reason, err, page)
	}
	got := *tg.ep.Metrics()
	got.UpdateTime = want.UpdateTime
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("the narrow answer reads differently (-whole +narrow):\n%s", diff)
	}
}

func parsePage(page []byte) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(bytes.NewReader(page))
}

// FuzzApplyIncremental checks the partial parse (only changed families
// parsed, values patched in place) against a whole-page parse: after any
// first page, any second page publishes the same metrics and error as it
// does on a target that forgot the first page's parse.
func FuzzApplyIncremental(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 2))
	addPageSeeds(f, func(engine uint8, page []byte) {
		next, _ := mutatePage(rng, page, fuzzTarget(f, engine).eng.families)
		f.Add(engine, page, next)
	})
	f.Fuzz(func(t *testing.T, engine uint8, first, second []byte) {
		inc, full := fuzzTarget(t, engine), fuzzTarget(t, engine)
		now := time.Unix(1_700_000_000, 0)
		_, err1 := inc.apply(first, false, now)
		_, err2 := full.apply(first, false, now)
		if fmt.Sprint(err1) != fmt.Sprint(err2) {
			t.Fatalf("one page, two answers: %v and %v", err1, err2)
		}
		now = now.Add(50 * time.Millisecond)
		full.forgetPrev()
		wantReason, wantErr := full.apply(second, false, now)
		gotReason, gotErr := inc.apply(second, false, now)
		if gotReason != wantReason || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Fatalf("second page: %q %v; a whole-page parse says %q %v\nfirst %q\nsecond %q",
				gotReason, gotErr, wantReason, wantErr, first, second)
		}
		if diff := cmp.Diff(*full.ep.Metrics(), *inc.ep.Metrics()); diff != "" {
			t.Fatalf("metrics differ from a whole-page parse (-whole +partial):\n%s\nfirst %q\nsecond %q", diff, first, second)
		}
	})
}
