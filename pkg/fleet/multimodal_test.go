package fleet

import (
	"bytes"
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/sim/tokenize"
)

func TestMultimodalWorkload(t *testing.T) {
	w := studyWorkload(t, "multimodal")
	cfg, err := EngineConfig(w)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.EncodePerToken != w.EncodePerToken || cfg.EncoderCacheTokens != 64*576 {
		t.Errorf("engine encoder %s / %d tokens, want the workload's", cfg.EncodePerToken, cfg.EncoderCacheTokens)
	}
	bad := w
	bad.Traffic.Images, bad.Traffic.PreambleTokens = 0, 0
	if bad.Validate() == nil {
		t.Error("no images and no preamble validated")
	}

	src, err := newSource(w.Traffic, cfg.Model, 1)
	if err != nil {
		t.Fatal(err)
	}
	rng := newRand(1)
	byImage := map[uint64][]*prompt{}
	for range 200 {
		p, err := src.next(rng)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.media) != 1 {
			t.Fatalf("%d media items, want 1", len(p.media))
		}
		m := p.media[0]
		if m.Tokens != 576 || !tokenize.Reserved(p.tokens[m.Offset]) || !tokenize.Reserved(p.tokens[m.Offset+m.Tokens-1]) ||
			tokenize.Reserved(p.tokens[m.Offset-1]) || tokenize.Reserved(p.tokens[m.Offset+m.Tokens]) {
			t.Fatalf("media %+v does not cover exactly the placeholders", m)
		}
		if got := p.body.AppendMediaHashes(nil); len(got) != 1 {
			t.Fatalf("the EPP finds %d media items in the body, want 1", len(got))
		}
		byImage[m.ID] = append(byImage[m.ID], p)
	}
	reused := false
	for _, ps := range byImage {
		if len(ps) < 2 {
			continue
		}
		reused = true
		a, b := ps[0], ps[1]
		if !slices.Equal(a.body.AppendMediaHashes(nil), b.body.AppendMediaHashes(nil)) {
			t.Error("the same image hashes differently in two bodies")
		}
		off := a.media[0].Offset
		if slices.Equal(a.tokens[:off], b.tokens[:off]) {
			t.Error("two requests share everything before the image: the prefix cache would cover it")
		}
		if !slices.Equal(a.tokens[off:off+576], b.tokens[off:off+576]) {
			t.Error("the same image has different placeholders")
		}
	}
	if !reused {
		t.Error("no image was drawn twice in 200 requests")
	}
}

// TestMultimodalAffinityRaisesEncoderHits runs the same short trace with
// encoder-cache affinity and with round-robin: affinity must find more
// images in the servers' encoder caches.
func TestMultimodalAffinityRaisesEncoderHits(t *testing.T) {
	t.Parallel()
	yaml, err := os.ReadFile("../../config/multimodal-affinity.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rr, err := Builtin(PolicyRoundRobin)
	if err != nil {
		t.Fatal(err)
	}
	w := MultimodalWorkload()
	w.Duration, w.WarmupRequests, w.Ladder = 2*time.Second, 400, []float64{200}
	hit := map[string]float64{}
	for _, p := range []Policy{ConfigPolicy("mm-affinity", "", yaml), rr} {
		res, err := Run(context.Background(), RunSpec{Workload: w, Policy: p, QPS: 200, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		if res.Completed == 0 || res.FirstError != "" || res.Encoder == nil {
			t.Fatalf("%s: implausible stage %+v", p.Name, res)
		}
		hit[p.Name] = res.Encoder.HitPct
	}
	if hit["mm-affinity"] < hit[PolicyRoundRobin]+10 {
		t.Errorf("encoder hit %% with affinity %.1f, round-robin %.1f: want affinity ≥ 10 points higher",
			hit["mm-affinity"], hit[PolicyRoundRobin])
	}
	t.Logf("encoder hit %%: %v", hit)
}

func TestSmokeMultimodal(t *testing.T) {
	t.Parallel()
	rr, err := Builtin(PolicyRoundRobin)
	if err != nil {
		t.Fatal(err)
	}
	m := &Matrix{Workloads: []Workload{tiny(MultimodalWorkload())}, Policies: []Policy{rr}, Seeds: []uint64{1, 2}}
	rep, err := m.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s := rep.Workloads[0].Policies[0].Stages[0]
	if s.Completed == 0 || s.FirstError != "" || s.Encoder == nil || s.Encoder.Misses == 0 {
		t.Errorf("implausible stage %+v", s)
	}
	var b stringsBuilder
	if err := WriteTable(&b, rep); err != nil {
		t.Fatal(err)
	}
	if !b.contains("encoder cache") {
		t.Error("the table has no encoder-cache lines")
	}
}

// TestMultimodalColdWorkload checks the variant without system prompts:
// its bodies carry no system message, and two requests share no prefix
// block, so every request is cold for the prefix index.
func TestMultimodalColdWorkload(t *testing.T) {
	w := studyWorkload(t, "MMC")
	src, err := newSource(w.Traffic, "m", 1)
	if err != nil {
		t.Fatal(err)
	}
	rng := newRand(1)
	var first []uint32
	for i := range 50 {
		p, err := src.next(rng)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(p.body.Raw, []byte(`"system"`)) {
			t.Fatal("a cold multimodal request has a system prompt")
		}
		if p.media[0].Offset != len(tokenize.Append(nil, "<|user|>\n"))+16 {
			t.Fatalf("image at token %d, want right after the role marker and the 16-token preamble", p.media[0].Offset)
		}
		head := p.tokens[:p.media[0].Offset]
		if i > 0 && slices.Equal(head, first) {
			t.Fatal("two requests share their text before the image")
		}
		first = head
	}
}

// studyWorkload looks up a study workload by name and checks that it is
// valid and outside Workloads, which bench-fleet's matrix runs.
func studyWorkload(t *testing.T, name string) Workload {
	t.Helper()
	w, err := WorkloadByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Validate(); err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(Workloads(), func(b Workload) bool { return b.Name == w.Name }) {
		t.Errorf("%s is in Workloads, so bench-fleet's matrix would run it", w.Name)
	}
	return w
}
