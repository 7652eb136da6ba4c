package burst

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// prompt is a prompt of blocks 64-token blocks (256 bytes each) derived
// from seed; prompts of one seed share their leading blocks.
func prompt(seed string, blocks int) string {
	return strings.Repeat(fmt.Sprintf("%-256s", seed), blocks)
}

func req(id, text string) *scheduler.Request {
	return &scheduler.Request{ID: id, Model: "m", Body: &request.Body{API: request.Completions, Model: "m", Prompt: []byte(text)}}
}

func params(mut func(*Params)) *Params {
	p := DefaultParams()
	if mut != nil {
		mut(&p)
	}
	return &p
}

// place runs assign over prompts (one entry each) on eps and returns each
// entry's endpoint name ("" for none).
func place(t *testing.T, p *Params, eps []*endpoint.Endpoint, prompts ...string) []string {
	t.Helper()
	pr, err := New("b", *p, nil)
	if err != nil {
		t.Fatal(err)
	}
	var entries []*entry
	for i, text := range prompts {
		entries = append(entries, &entry{id: fmt.Sprint(i), hashes: pr.hash(req("", text)), eps: eps})
	}
	assign(entries, p)
	out := make([]string, len(entries))
	for i, e := range entries {
		if e.assigned != nil {
			out[i] = e.assigned.Name
		}
	}
	return out
}

func distinct(names []string) int {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return len(m)
}

func TestIdenticalGroupsStayTogetherAndGroupsSpread(t *testing.T) {
	eps := plugintest.Endpoints(4, 1)
	a, b := prompt("rollout A", 8), prompt("rollout B", 8)
	got := place(t, params(nil), eps, a, b, a, b, a, b, a, b)
	if got[0] == "" || got[0] != got[2] || got[2] != got[4] || got[4] != got[6] {
		t.Errorf("group A placed on %v, want one endpoint", got)
	}
	if got[1] == "" || got[1] != got[3] || got[1] == got[0] {
		t.Errorf("group B placed on %v, want one endpoint other than A's", got)
	}
	alone := place(t, params(nil), eps, prompt("x", 4), prompt("y", 4))
	if alone[0] != "" || alone[1] != "" {
		t.Errorf("two unrelated prompts were placed: %v; want no affinity", alone)
	}
	if got := place(t, params(nil), eps, "short", "short"); got[0] != "" {
		t.Errorf("prompts under one block were placed: %v", got)
	}
}

func TestMaxPerReplicaSpills(t *testing.T) {
	eps := plugintest.Endpoints(3, 1)
	a := prompt("samples", 4)
	got := place(t, params(func(p *Params) { p.MaxPerReplica = 2 }), eps, a, a, a, a, a)
	counts := map[string]int{}
	for _, n := range got {
		counts[n]++
	}
	if len(counts) != 3 || counts[got[0]] != 2 || counts[got[2]] != 2 || counts[got[4]] != 1 || got[0] != got[1] {
		t.Errorf("5 samples with maxPerReplica 2: %v, want 2 + 2 + 1 filling in order", got)
	}
	seven := place(t, params(func(p *Params) { p.MaxPerReplica = 2 }), eps, a, a, a, a, a, a, a)
	if distinct(seven) != 3 || seven[6] == "" {
		t.Errorf("7 samples, 3 endpoints, 2 each: %v; the seventh must still be placed", seven)
	}
}

func TestPrefixSharingSinglesJoinTheirGroup(t *testing.T) {
	eps := plugintest.Endpoints(2, 1)
	shared := prompt("shared document", 6)
	group := shared + prompt("question", 2)
	other := prompt("another rollout", 8)
	// A single sharing the document's 6 blocks with the group, another
	// group of three (so the window's fair share is 3 an endpoint) and a
	// single sharing nothing.
	texts := []string{group, group, other, other, other, shared + prompt("follow-up", 2), prompt("unrelated", 8)}
	got := place(t, params(func(p *Params) { p.MinColocateBlocks = 4 }), eps, texts...)
	if got[5] != got[0] || got[2] == got[0] || got[6] != "" {
		t.Errorf("with minColocateBlocks 4: %v; want the follow-up with its group, the other group apart, the unrelated one unplaced", got)
	}
	if got := place(t, params(nil), eps, texts...); got[5] != "" || got[0] == "" {
		t.Errorf("with minColocateBlocks 0: %v; want only the identical groups placed", got)
	}
	// Fair share bounds co-location: eight singles sharing the document
	// over four endpoints are not all stacked on one.
	eps = plugintest.Endpoints(4, 1)
	var many []string
	for i := range 8 {
		many = append(many, shared+prompt(fmt.Sprint("q", i), 2))
	}
	if got := place(t, params(func(p *Params) { p.MinColocateBlocks = 4 }), eps, many...); distinct(got) < 4 {
		t.Errorf("eight prefix-sharing singles on %d endpoints: %v; the fair share should spread them", distinct(got), got)
	}
}

func TestBalanceByTokens(t *testing.T) {
	eps := plugintest.Endpoints(2, 1)
	long, short1, short2 := prompt("long", 40), prompt("s1", 2), prompt("s2", 2)
	got := place(t, params(func(p *Params) { p.BalanceBy = balanceTokens }), eps, long, long, short1, short1, short2, short2)
	if got[2] == got[0] || got[4] == got[0] {
		t.Errorf("by tokens the short groups go beside the long one's endpoint, not on it: %v", got)
	}
}

func TestWindowPlacesConcurrentRequestsTogether(t *testing.T) {
	eps := plugintest.Endpoints(4, 1)
	p, err := New("b", *params(func(p *Params) { p.WindowDurationMs = 50 }), nil)
	if err != nil {
		t.Fatal(err)
	}
	text := prompt("rollout step", 8)
	var wg sync.WaitGroup
	got := make([]string, 6)
	waited := make([]bool, 6)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := plugintest.State(uint64(i))
			st.OnWait = func() { waited[i] = true }
			p.Produce(context.Background(), st, req(fmt.Sprint("r", i), text), eps)
			m, ok := p.Match(st)
			if !ok {
				return
			}
			for _, e := range eps {
				if m.Blocks(e) == m.TotalBlocks && m.TotalBlocks == 8 {
					got[i] = e.Name
				}
			}
		}()
	}
	wg.Wait()
	if distinct(got) != 1 || got[0] == "" {
		t.Errorf("six samples sent together: placed on %v, want one endpoint with their whole prompt", got)
	}
	for i, w := range waited {
		if !w {
			t.Errorf("request %d waited without calling OnWait", i)
		}
	}

	// A request without a full block does not wait; a canceled one stops
	// waiting.
	start := time.Now()
	p.Produce(context.Background(), plugintest.State(1), req("short", "hi"), eps)
	if d := time.Since(start); d > 40*time.Millisecond {
		t.Errorf("a prompt without a full block waited %v", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	st := plugintest.State(2)
	p.Produce(ctx, st, req("gone", text), eps)
	if _, ok := p.Match(st); ok {
		t.Error("a canceled request got a match")
	}
}

func TestFullWindowClosesAtOnce(t *testing.T) {
	eps := plugintest.Endpoints(2, 1)
	p, _ := New("b", *params(func(p *Params) { p.WindowDurationMs = 10000; p.MaxBatchSize = 2 }), nil)
	text := prompt("pair", 4)
	done := make(chan struct{})
	go func() {
		p.Produce(context.Background(), plugintest.State(1), req("a", text), eps)
		close(done)
	}()
	time.Sleep(20 * time.Millisecond)
	st := plugintest.State(2)
	p.Produce(context.Background(), st, req("b", text), eps)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a full window did not close")
	}
	if m, ok := p.Match(st); !ok || m.Len() != 1 {
		t.Errorf("the pair's match: %+v %v", m, ok)
	}
}

func TestPlanBatchAnswersWithoutWaiting(t *testing.T) {
	eps := plugintest.Endpoints(3, 1)
	p, _ := New("b", *params(func(p *Params) { p.WindowDurationMs = 10000 }), nil)
	text := prompt("planned", 4)
	reqs := []*scheduler.Request{req("1", text), req("2", text), req("3", prompt("other", 4))}
	p.PlanBatch(reqs, eps)
	start := time.Now()
	var where []string
	for _, r := range reqs[:2] {
		st := plugintest.State(1)
		p.Produce(context.Background(), st, r, eps)
		m, _ := p.Match(st)
		for _, e := range eps {
			if m != nil && m.Blocks(e) > 0 {
				where = append(where, e.Name)
			}
		}
	}
	if time.Since(start) > time.Second || len(where) != 2 || where[0] != where[1] {
		t.Errorf("planned requests: placed %v after %v; want both on one endpoint at once", where, time.Since(start))
	}
}

func TestParams(t *testing.T) {
	for _, raw := range []string{`{"windowDurationMs":0}`, `{"windowDurationMs":10001}`, `{"maxPerReplica":0}`, `{"blockSizeTokens":0}`,
		`{"maxPrefixTokensToMatch":10}`, `{"minColocateBlocks":-1}`, `{"maxBatchSize":0}`, `{"balanceBy":"bytes"}`, `{"windowMs":5}`} {
		if _, err := Factory("b", []byte(raw), nil); err == nil {
			t.Errorf("%s accepted", raw)
		}
	}
	if _, err := Factory("b", []byte(`{"maxPerReplica":-1,"maxBatchSize":-1,"balanceBy":"tokens","minColocateBlocks":2}`), nil); err != nil {
		t.Error(err)
	}
}
