package poolroute_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/poolroute"
)

func ep(name, pool string) *endpoint.Endpoint {
	return endpoint.New(endpoint.Spec{Name: name, Pool: pool, Address: "10.0.0.1", Port: 8000})
}

func names(eps []*endpoint.Endpoint) []string {
	var out []string
	for _, e := range eps {
		out = append(out, e.Name)
	}
	return out
}

func TestOnePoolChangesNothing(t *testing.T) {
	r := poolroute.New([]string{"only"}, "")
	single := []*endpoint.Endpoint{ep("x", "only"), ep("z", "only")}
	pool, eps, err := r.Resolve(single, poolroute.Query{Header: "elsewhere", Model: "m"})
	if err != nil || pool != "only" || len(eps) != 2 {
		t.Errorf("one pool: got %q %v %v; the header and model must not matter", pool, names(eps), err)
	}
	none := poolroute.New(nil, "")
	pool, eps, err = none.Resolve(single[:1], poolroute.Query{Hint: true})
	if err != nil || pool != "only" || len(eps) != 0 {
		t.Errorf("hint that matched nothing: got %q %v %v, want the empty hinted set", pool, names(eps), err)
	}
}

// TestModelClues: base model (from the metrics), running and waiting
// adapters, and the model list all tell a pool serves a model.
func TestModelClues(t *testing.T) {
	a, b := ep("a0", "a"), ep("b0", "b")
	a.SetMetrics(&endpoint.Metrics{BaseModel: "llama", WaitingModels: map[string]int{"sql": 1}})
	b.SetModels(endpoint.NewModels([]endpoint.Model{{ID: "qwen"}}, time.Now()))
	r := poolroute.New(nil, "X-Pool")
	all := []*endpoint.Endpoint{a, b}
	for model, want := range map[string]string{"llama": "a", "sql": "a", "qwen": "b"} {
		pool, eps, err := r.Resolve(all, poolroute.Query{Model: model})
		if err != nil || pool != want || len(eps) != 1 || eps[0].Pool != want {
			t.Errorf("model %s: got %q %v %v, want pool %s", model, pool, names(eps), err, want)
		}
	}
	if _, _, err := r.Resolve(all, poolroute.Query{Model: "gpt"}); !errors.Is(err, poolroute.ErrModelNotServed) {
		t.Errorf("unlisted model: %v, want ErrModelNotServed", err)
	}
	if _, _, err := r.Resolve(all, poolroute.Query{}); !errors.Is(err, poolroute.ErrAmbiguous) {
		t.Errorf("no model, no header: %v, want ErrAmbiguous", err)
	}
	if r.Header() != "x-pool" {
		t.Errorf("header %q, want it lower-cased", r.Header())
	}
}

// TestIndexFollowsSnapshots: a new snapshot is indexed again; the same one
// is not.
func TestIndexFollowsSnapshots(t *testing.T) {
	r := poolroute.New([]string{"a"}, "")
	first := []*endpoint.Endpoint{ep("a0", "a")}
	if got := r.Pools(first); len(got) != 1 {
		t.Fatalf("pools %v", got)
	}
	second := []*endpoint.Endpoint{ep("a0", "a"), ep("b0", "b")}
	if got := r.Pools(second); fmt.Sprint(got) != "[a b]" {
		t.Errorf("pools after a new snapshot %v, want [a b]", got)
	}
	if got := r.Pools(first); fmt.Sprint(got) != "[a]" {
		t.Errorf("pools of the first snapshot again %v, want [a]", got)
	}
}

// BenchmarkResolve times the model screening of a request among two pools
// of 50 endpoints each, and the one-pool path every request of an EPP
// serving one pool takes.
func BenchmarkResolve(b *testing.B) {
	var all []*endpoint.Endpoint
	for i := range 100 {
		pool, model := "a", "llama"
		if i%2 == 1 {
			pool, model = "b", "qwen"
		}
		e := ep(fmt.Sprintf("%s-%03d", pool, i), pool)
		e.SetModels(endpoint.NewModels([]endpoint.Model{{ID: model}}, time.Now()))
		all = append(all, e)
	}
	r := poolroute.New([]string{"a", "b"}, "")
	b.Run("model/2x50", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := r.Resolve(all, poolroute.Query{Model: "qwen"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("header/2x50", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := r.Resolve(all, poolroute.Query{Header: "b"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	one := poolroute.New([]string{"a"}, "")
	single := all[:1]
	b.Run("one-pool", func(b *testing.B) {
		for b.Loop() {
			_ = one.Pools(single)
		}
	})
}

// TestSetDeclared: a pool declared at run time is known while it has no
// endpoints (its requests get an empty candidate set, the server's 503),
// and forgotten once undeclared, even for the same snapshot.
func TestSetDeclared(t *testing.T) {
	a := ep("a0", "a")
	a.SetMetrics(&endpoint.Metrics{BaseModel: "llama"})
	all := []*endpoint.Endpoint{a}
	r := poolroute.New(nil, "")
	if _, _, err := r.Resolve(all, poolroute.Query{Header: "b", Model: "llama"}); err != nil {
		t.Fatalf("one pool: %v; the header must not matter", err)
	}
	r.SetDeclared([]string{"a", "b"})
	pool, eps, err := r.Resolve(all, poolroute.Query{Header: "b", Model: "llama"})
	if err != nil || pool != "b" || len(eps) != 0 {
		t.Errorf("declared empty pool: got %q %v %v, want pool b with no candidates", pool, names(eps), err)
	}
	if _, _, err := r.Resolve(all, poolroute.Query{Model: "qwen"}); !errors.Is(err, poolroute.ErrMaybeEmptyPool) {
		t.Errorf("model beside an empty pool: %v, want ErrMaybeEmptyPool", err)
	}
	r.SetDeclared([]string{"a"})
	if pool, _, err := r.Resolve(all, poolroute.Query{Header: "b"}); err != nil || pool != "a" {
		t.Errorf("after b was undeclared: got %q %v, want the one pool a", pool, err)
	}
}
