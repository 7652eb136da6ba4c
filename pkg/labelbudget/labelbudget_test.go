package labelbudget

import (
	"strconv"
	"sync"
	"testing"
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
