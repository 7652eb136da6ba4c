package mmcache

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestEncoderCacheMetrics: llm-d's encoder-cache families count the items
// looked up by modality, the endpoints believed to hold them, and the best
// endpoint's share of each request's items.
func TestEncoderCacheMetrics(t *testing.T) {
	t.Parallel()
	pool := eps(2)
	h := poolOf(pool)
	reg := prometheus.NewPedanticRegistry()
	h.Registerer = reg
	p := newProducer(t, "", h)
	audio := map[string]any{"type": "input_audio", "input_audio": map[string]any{"data": "UklGRg==", "format": "wav"}}
	a, b := imagePart("https://x/a.png"), imagePart("https://x/b.png")
	route(p, chatWith(t, "first", a, audio), pool, pool[0], nil) // cold: nothing held
	route(p, chatWith(t, "second", a, b, audio), pool, pool[1], nil)
	want := `
# HELP llm_d_epp_encoder_cache_hits_total Multimodal items an endpoint was believed to hold when a request referencing them was matched, by endpoint and modality.
# TYPE llm_d_epp_encoder_cache_hits_total counter
llm_d_epp_encoder_cache_hits_total{modality="audio",plugin_name="mm",plugin_type="mm-embeddings-cache-producer",pod="s0"} 1
llm_d_epp_encoder_cache_hits_total{modality="image",plugin_name="mm",plugin_type="mm-embeddings-cache-producer",pod="s0"} 1
# HELP llm_d_epp_encoder_cache_queries_total Multimodal items looked up in the encoder-cache affinity index, by modality.
# TYPE llm_d_epp_encoder_cache_queries_total counter
llm_d_epp_encoder_cache_queries_total{modality="audio",plugin_name="mm",plugin_type="mm-embeddings-cache-producer"} 2
llm_d_epp_encoder_cache_queries_total{modality="image",plugin_name="mm",plugin_type="mm-embeddings-cache-producer"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "llm_d_epp_encoder_cache_hits_total", "llm_d_epp_encoder_cache_queries_total"); err != nil {
		t.Error(err)
	}
	// Two requests observed: the cold one at 0, the second at 2 of 3 items.
	if n := testutil.CollectAndCount(reg, "llm_d_epp_encoder_cache_hit_ratio"); n != 1 {
		t.Fatalf("%d hit-ratio series, want 1", n)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "llm_d_epp_encoder_cache_hit_ratio" {
			h := f.GetMetric()[0].GetHistogram()
			if h.GetSampleCount() != 2 || h.GetSampleSum() < 0.66 || h.GetSampleSum() > 0.67 {
				t.Errorf("hit ratio: %d samples summing to %v, want 2 summing to 2/3", h.GetSampleCount(), h.GetSampleSum())
			}
		}
	}
}
