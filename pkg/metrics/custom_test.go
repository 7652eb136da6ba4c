package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/endpoint"
)

// TestCustomMetrics: engineConfigs' customMetrics publish series as
// endpoint attributes of producer core-metrics-extractor; an optional one
// the page lacks is dropped, a required one keeps its last value and is
// logged once.
func TestCustomMetrics(t *testing.T) {
	t.Parallel()
	page := "# TYPE my_queue gauge\nmy_queue{tier=\"gold\"} 7\nmy_queue{tier=\"free\"} 2\n" +
		"# TYPE my_running gauge\nmy_running 3\n# TYPE my_extra counter\nmy_extra_total 5\n"
	ms := newModelServer(t, []byte(page))
	st := newStoreWith(ms.spec(t, "a", map[string]string{EngineLabelLLMD: "mine"}))
	rec := &recorder{}
	s, err := New(st, Options{Interval: 20 * time.Millisecond, Log: rec.logger(), Registerer: prometheus.NewRegistry(),
		Engines: []EngineConfig{{Name: "mine", RunningRequestsSpec: "my_running", CustomMetrics: []CustomMetric{
			{AttributeKey: "custom.queue_depth", MetricSpec: "my_queue{tier=gold}"},
			{AttributeKey: "extra", MetricSpec: "my_extra_total", Optional: true},
			{AttributeKey: "gone", MetricSpec: "my_gone"},
		}}}})
	if err != nil {
		t.Fatal(err)
	}
	startScraper(t, s)
	ep, _ := st.Get("a")
	key := func(name string) string { return endpoint.AttributeKey(name, ExtractorType) }
	eventually(t, 3*time.Second, "custom metrics published", func() bool {
		v, ok := ep.Attribute(key("custom.queue_depth"))
		x, okx := ep.Attribute(key("extra"))
		return ok && v == 7 && okx && x == 5 && ep.Metrics().RunningRequestsSize == 3
	})
	ms.setPage([]byte(strings.Replace(strings.Replace(page, "} 7", "} 9", 1), "my_extra_total 5\n", "", 1)))
	eventually(t, 3*time.Second, "the new value, the optional one dropped", func() bool {
		v, _ := ep.Attribute(key("custom.queue_depth"))
		_, okx := ep.Attribute(key("extra"))
		return v == 9 && !okx
	})
	if _, ok := ep.Attribute(key("gone")); ok {
		t.Error("a custom metric the page never had has a value")
	}
	if n := rec.count("custom metrics unavailable, keeping their previous values", ""); n != 1 {
		t.Errorf("the missing required custom metric was logged %d times, want once", n)
	}
}

func TestCustomMetricsErrors(t *testing.T) {
	t.Parallel()
	_, err := buildEngines([]EngineConfig{{Name: "x", CustomMetrics: []CustomMetric{
		{AttributeKey: "", MetricSpec: "a"},
		{AttributeKey: "k", MetricSpec: "a{"},
		{AttributeKey: "k2", MetricSpec: "b"},
		{AttributeKey: "k2", MetricSpec: "c"},
	}}}, EngineVLLM, "")
	for _, want := range []string{
		"engineConfigs[0].customMetrics[0].attributeKey: must not be empty",
		"engineConfigs[0].customMetrics[1].metricSpec",
		`engineConfigs[0].customMetrics[3].attributeKey: "k2" is already mapped`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	p, err := DecodeExtractorParams([]byte(`engineConfigs: [{name: e, customMetrics: [{attributeKey: q, metricSpec: "m{a=b}", optional: true}]}]`))
	if err != nil || len(p.EngineConfigs) != 1 || p.EngineConfigs[0].CustomMetrics[0] != (CustomMetric{AttributeKey: "q", MetricSpec: "m{a=b}", Optional: true}) {
		t.Errorf("decoded %+v, %v", p, err)
	}
}

// TestLLMDLoRAResidencySpecsLoad: llm-d's per-adapter residency specs load
// (its files carry them) and are reported as not read.
