package engine

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// mmPrompt is 32 text tokens from seed, an item's 64 placeholders and 32
// more text tokens; the item sits at offset 32.
func mmPrompt(seed uint32, id uint64) ([]uint32, []Media) {
	toks := append(tokens(seed, 32), tokens(1000+uint32(id), 64)...)
	toks = append(toks, tokens(seed+500, 32)...)
	return toks, []Media{{ID: id, Offset: 32, Tokens: 64}}
}

func mmConfig(cacheTokens int) Config {
	cfg := testConfig()
	cfg.EncodePerToken, cfg.EncoderCacheTokens = 100*us, cacheTokens
	return cfg
}

// firstTokens returns each request's time to its first token, by ID.
func firstTokens(events []Event, arrivals []arrival) map[uint64]time.Duration {
	at := map[uint64]time.Duration{}
	for _, a := range arrivals {
		at[a.req.ID] = a.at
	}
	out := map[uint64]time.Duration{}
	for _, ev := range events {
		if ev.Token == 1 {
			out[ev.ID] = ev.Time - at[ev.ID]
		}
	}
	return out
}

func TestEncoderCacheHit(t *testing.T) {
	e := newEngine(t, mmConfig(1000))
	a, am := mmPrompt(1, 7)
	b, bm := mmPrompt(2, 7) // another prompt, the same image
	arr := []arrival{
		{0, Request{ID: 1, Tokens: a, MaxTokens: 1, Media: am}},
		{time.Second, Request{ID: 2, Tokens: b, MaxTokens: 1, Media: bm}},
	}
	ttft := firstTokens(simulate(t, e, arr), arr)
	prefill := ms + 2*ms + 128*10*us
	if want := prefill + 64*100*us; ttft[1] != want {
		t.Errorf("first request's TTFT = %s, want %s (prefill and encode)", ttft[1], want)
	}
	if ttft[2] != prefill {
		t.Errorf("second request's TTFT = %s, want %s (encoder cache hit)", ttft[2], prefill)
	}
	if m := e.Metrics(); m.EncoderHits != 1 || m.EncoderMisses != 1 {
		t.Errorf("encoder hits/misses = %d/%d, want 1/1", m.EncoderHits, m.EncoderMisses)
	}
}

func TestEncoderCacheLRU(t *testing.T) {
	e := newEngine(t, mmConfig(128)) // two 64-token items
	var arr []arrival
	for i, id := range []uint64{1, 2, 1, 3, 2, 9, 9} {
		toks, m := mmPrompt(uint32(i+1), id)
		if id == 9 { // larger than the cache: never kept
			toks = append(tokens(uint32(i+1), 32), tokens(77, 200)...)
			m = []Media{{ID: 9, Offset: 32, Tokens: 200}}
		}
		arr = append(arr, arrival{time.Duration(i) * time.Second, Request{ID: uint64(i), Tokens: toks, MaxTokens: 1, Media: m}})
	}
	simulate(t, e, arr)
	// 1 miss, 2 miss, 1 hit, 3 miss (evicts 2), 2 miss (evicts 1), 9 miss twice.
	if m := e.Metrics(); m.EncoderHits != 1 || m.EncoderMisses != 6 {
		t.Errorf("encoder hits/misses = %d/%d, want 1/6", m.EncoderHits, m.EncoderMisses)
	}
	if got, want := e.enc.used, 128; got != want {
		t.Errorf("encoder cache holds %d tokens, want %d", got, want)
	}
}

func TestPrefixHitSkipsEncoding(t *testing.T) {
	e := newEngine(t, mmConfig(0)) // no encoder cache: only the prefix cache can help
	a, am := mmPrompt(1, 7)
	b := append(slices.Clone(a), tokens(9, 32)...) // a, then more text
	arr := []arrival{
		{0, Request{ID: 1, Tokens: a, MaxTokens: 1, Media: am}},
		{time.Second, Request{ID: 2, Tokens: b, MaxTokens: 1, Media: am}},
	}
	ttft := firstTokens(simulate(t, e, arr), arr)
	// b's first 128 tokens (8 blocks) are cached; 32 are computed, no encoding.
	if want := ms + 2*ms + 32*10*us; ttft[2] != want {
		t.Errorf("TTFT after a prefix hit = %s, want %s", ttft[2], want)
	}
	if m := e.Metrics(); m.EncoderHits != 0 || m.EncoderMisses != 1 {
		t.Errorf("encoder hits/misses = %d/%d, want 0/1", m.EncoderHits, m.EncoderMisses)
	}
}

func TestFreeEncoderChangesNothing(t *testing.T) {
	run := func(media bool) []Event {
		e := newEngine(t, testConfig())
		var arr []arrival
		for i := range 20 {
			toks, m := mmPrompt(uint32(i%5+1), uint64(i%3))
			if !media {
				m = nil
			}
			arr = append(arr, arrival{time.Duration(i) * ms, Request{ID: uint64(i), Tokens: toks, MaxTokens: 5, Media: m}})
		}
		return slices.Clone(simulate(t, e, arr))
	}
	if with, without := run(true), run(false); !slices.Equal(with, without) {
		t.Error("media on an engine without an encoder cost changed the timeline")
	}
}

func TestEncoderValidation(t *testing.T) {
	cfg := testConfig()
	cfg.EncodePerToken, cfg.EncoderCacheTokens = -1, -1
	err := cfg.Validate()
	if err == nil {
		t.Fatal("negative encoder fields validated")
	}
	for _, field := range []string{"encodePerToken", "encoderCacheTokens"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error %q does not name %s", err, field)
		}
	}
	e := newEngine(t, mmConfig(100))
	toks, _ := mmPrompt(1, 1)
	for _, m := range [][]Media{
		{{ID: 1, Offset: 100, Tokens: 64}},                                // past the prompt
		{{ID: 1, Offset: 0, Tokens: 0}},                                   // empty
		{{ID: 1, Offset: 32, Tokens: 64}, {ID: 2, Offset: 40, Tokens: 8}}, // overlapping
	} {
		if err := e.Submit(Request{ID: 1, Tokens: toks, MaxTokens: 1, Media: m}, 0); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("Submit with media %v: err = %v, want ErrInvalidRequest", m, err)
		}
	}
}
