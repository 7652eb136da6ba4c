package labelbudget

import (
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestBudget(t *testing.T) {
	t.Parallel()
	b := New(3)
	for i := range 3 {
		if got := b.Value(strconv.Itoa(i)); got != strconv.Itoa(i) {
			t.Fatalf("value %d within the budget = %q", i, got)
		}
	}
	if got := b.Value("3"); got != Other {
		t.Errorf("value past the budget = %q, want %q", got, Other)
	}
	if got := b.Value("1"); got != "1" {
		t.Errorf("admitted value = %q, want it kept", got)
	}
}

func TestBudgetConcurrent(t *testing.T) {
	t.Parallel()
	b := New(10)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				b.Value(strconv.Itoa((g*100 + i) % 20))
			}
		}()
	}
	wg.Wait()
	if n := len(b.seen); n != 10 {
		t.Errorf("%d values admitted, want exactly the budget of 10", n)
	}
}

// TestForgettingBudget: when full, a new value takes the place of those
// idle for the configured time, whose owner is told; values in use stay,
// and with none idle a new value is Other.
func TestForgettingBudget(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	var forgotten []string
	b := NewForgetting(2, time.Minute, func(v string) { forgotten = append(forgotten, v) })
	b.now = func() time.Time { return now }
	b.Value("a")
	now = now.Add(30 * time.Second)
	b.Value("b")
	if got := b.Value("c"); got != Other || len(forgotten) != 0 {
		t.Fatalf("full, nothing idle: got %q, forgot %v; want %q, nothing", got, forgotten, Other)
	}
	now = now.Add(40 * time.Second) // a idle 70 s, b 40 s
	if got := b.Value("c"); got != "c" || !slices.Equal(forgotten, []string{"a"}) {
		t.Fatalf("full, a idle: got %q, forgot %v; want c, [a]", got, forgotten)
	}
	now = now.Add(50 * time.Second) // b idle 90 s, c 50 s
	b.Value("c")                    // in use: stays
	now = now.Add(20 * time.Second) // b 110 s, c 20 s
	if got := b.Value("a"); got != "a" || !slices.Equal(forgotten, []string{"a", "b"}) {
		t.Fatalf("a back: got %q, forgot %v; want a, [a b]", got, forgotten)
	}
	if got := b.Value("c"); got != "c" {
		t.Errorf("c, used 20 s ago, was forgotten: %q", got)
	}
}

// TestPlainBudgetNeverForgets: New's budget keeps its first values.
func TestPlainBudgetNeverForgets(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	b := New(1)
	b.now = func() time.Time { return now }
	b.Value("a")
	now = now.Add(24 * time.Hour)
	if got := b.Value("b"); got != Other {
		t.Errorf("a day later, a new value = %q, want %q", got, Other)
	}
}
