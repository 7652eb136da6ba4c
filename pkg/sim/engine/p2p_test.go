package engine

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestP2PPullTimeline(t *testing.T) {
	t.Parallel()
	e := newEngine(t, transferConfig())
	events := simulate(t, e, together(Request{ID: 1, Tokens: tokens(1, 100), MaxTokens: 2, PullTokens: 64}))
	want := []Event{
		// pull 500µs + 64·1µs, then a prefill of the other 36 tokens:
		// 1ms + 2ms overhead + 360µs.
		{ID: 1, Time: 3924 * us, Token: 1, Cached: 64},
		{ID: 1, Time: 5024 * us, Token: 2, Cached: 64, Done: true},
	}
	if diff := cmp.Diff(want, events); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	if m := e.Metrics(); m.P2PPulls != 1 || m.P2PPullTokens != 64 || m.KVTransfers != 0 || m.PrefixHits != 0 {
		t.Fatalf("metrics after a pull: %+v", m)
	}
}

func TestP2PPullTakesOnlyWhatTheLocalCacheLacks(t *testing.T) {
	t.Parallel()
	prefix := tokens(1, 64)
	for _, tc := range []struct {
		name       string
		local      int // leading tokens of the prefix cached locally first
		pulled     int
		wantCached int
	}{
		{"nothing local", 0, 64, 64},
		{"half local", 32, 32, 64},
		{"all local", 64, 0, 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEngine(t, transferConfig())
			var arrivals []arrival
			if tc.local > 0 {
				arrivals = append(arrivals, arrival{at: 0, req: Request{ID: 1, Tokens: append(prefix[:tc.local:tc.local], tokens(9, 4)...), MaxTokens: 1}})
			}
			arrivals = append(arrivals, arrival{at: 50 * ms, req: Request{ID: 2, Tokens: withPrefix(prefix, 2, 36), MaxTokens: 1, PullTokens: 64}})
			s := summarize(t, simulate(t, e, arrivals))
			m := e.Metrics()
			if s[2].Cached != tc.wantCached || m.P2PPullTokens != uint64(tc.pulled) || (m.P2PPulls == 0) != (tc.pulled == 0) {
				t.Fatalf("cached %d, pulled %d in %d pulls; want %d cached, %d pulled", s[2].Cached, m.P2PPullTokens, m.P2PPulls, tc.wantCached, tc.pulled)
			}
		})
	}
}

func TestP2PPullStopsShortOfTheLastToken(t *testing.T) {
	t.Parallel()
	e := newEngine(t, transferConfig())
	s := summarize(t, simulate(t, e, together(Request{ID: 1, Tokens: tokens(1, 100), MaxTokens: 1, PullTokens: 500})))
	// 99 tokens pulled (599µs), then one iteration computing the last
	// prompt token without the prefill overhead: 1ms + 10µs.
	if s[1].Cached != 99 || s[1].First != 1609*us || e.Metrics().P2PPullTokens != 99 {
		t.Fatalf("cached %d, first token %v, pulled %d; want 99, 1.609ms, 99", s[1].Cached, s[1].First, e.Metrics().P2PPullTokens)
	}
}

// TestCachedPrefixSalted: a peer asked what it holds answers per salt and
// adapter, as its own requests would hit.
func TestCachedPrefixSalted(t *testing.T) {
	t.Parallel()
	prompt := tokens(5, 100)
	e := newEngine(t, testConfig())
	simulate(t, e, together(
		Request{ID: 1, Tokens: prompt, MaxTokens: 1, CacheSalt: "s"},
		Request{ID: 2, Tokens: prompt, MaxTokens: 1, LoRA: "a"},
	))
	for _, tc := range []struct {
		lora, salt string
		want       int
	}{
		{"", "s", 96},
		{"", "", 0},
		{"", "t", 0},
		{"a", "", 96},
		{"a", "s", 0},
		{"b", "", 0},
	} {
		if got := e.CachedPrefixSalted(prompt, tc.lora, tc.salt); got != tc.want {
			t.Errorf("adapter %q salt %q: %d cached, want %d", tc.lora, tc.salt, got, tc.want)
		}
	}
	if got := e.CachedPrefix(prompt, "a"); got != 96 {
		t.Errorf("CachedPrefix = %d, want the unsalted lookup's 96", got)
	}
}

func TestTransferPriceOverride(t *testing.T) {
	t.Parallel()
	e := newEngine(t, transferConfig())
	s := summarize(t, simulate(t, e, together(Request{ID: 1, Tokens: tokens(1, 100), MaxTokens: 1, RemotePrefill: true, TransferPerToken: 5 * us})))
	// 500µs + 100·5µs, then one iteration: 1ms + 10µs.
	if s[1].First != 2010*us {
		t.Fatalf("first token at %v, want 2.01ms (the request's price, not the engine's)", s[1].First)
	}
	if err := e.Submit(Request{ID: 2, Tokens: tokens(1, 10), MaxTokens: 1, TransferPerToken: -us}, 0); err == nil {
		t.Error("a negative price was accepted")
	}
}
