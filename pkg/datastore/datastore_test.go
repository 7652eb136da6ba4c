package datastore

import (
	"maps"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
)

func names(eps []*endpoint.Endpoint) []string {
	out := []string{}
	for _, e := range eps {
		out = append(out, e.Name)
	}
	return out
}

func spec(name, ip string, labels map[string]string) endpoint.Spec {
	return endpoint.Spec{Name: name, Address: ip, Port: 8000, Labels: labels}
}

func TestReplaceUpsertDelete(t *testing.T) {
	t.Parallel()
	s := New()
	if s.Ready() {
		t.Fatal("new store is ready")
	}
	s.Replace("file", []endpoint.Spec{spec("b", "10.0.0.2", nil), spec("a", "10.0.0.1", nil)})
	if !s.Ready() {
		t.Fatal("store not ready after a source synced")
	}
	if d := cmp.Diff([]string{"a", "b"}, names(s.Snapshot())); d != "" {
		t.Errorf("snapshot (-want +got)\n%s", d)
	}
	s.Upsert("k8s", spec("c", "10.0.0.3", nil))
	s.Replace("file", []endpoint.Spec{spec("a", "10.0.0.1", nil)}) // b leaves; c is owned by k8s
	if d := cmp.Diff([]string{"a", "c"}, names(s.Snapshot())); d != "" {
		t.Errorf("after replace (-want +got)\n%s", d)
	}
	s.Delete("c")
	s.Delete("missing")
	if d := cmp.Diff([]string{"a"}, names(s.Snapshot())); d != "" {
		t.Errorf("after delete (-want +got)\n%s", d)
	}
	s.DeleteSource("file")
	if s.Ready() || len(s.Snapshot()) != 0 {
		t.Errorf("after DeleteSource: ready=%v endpoints=%v", s.Ready(), names(s.Snapshot()))
	}
}

func TestUpsertKeepsIdentityAndMetrics(t *testing.T) {
	t.Parallel()
	s := New()
	s.Upsert("k8s", spec("a", "10.0.0.1", map[string]string{"x": "1"}))
	a, _ := s.Get("a")
	m := &endpoint.Metrics{WaitingQueueSize: 3, UpdateTime: time.Now()}
	a.SetMetrics(m)
	models := endpoint.NewModels([]endpoint.Model{{ID: "base"}}, time.Now())
	a.SetModels(models)
	s.Upsert("k8s", spec("a", "10.0.0.1", map[string]string{"x": "1"}))
	if same, _ := s.Get("a"); same != a {
		t.Error("unchanged spec replaced the endpoint")
	}
	s.Upsert("k8s", spec("a", "10.0.0.1", map[string]string{"x": "2"}))
	relabeled, _ := s.Get("a")
	if relabeled == a || relabeled.Metrics() != m || relabeled.Models() != models || relabeled.Label("x") != "2" {
		t.Error("label change must give a new endpoint that keeps the metrics and the model list")
	}
	s.Upsert("k8s", spec("a", "10.0.0.9", nil))
	moved, _ := s.Get("a")
	if moved.Metrics() == m || moved.Models() != nil {
		t.Error("address change kept metrics or the model list of the old address")
	}
}

func TestChangedAndSnapshotImmutability(t *testing.T) {
	t.Parallel()
	s := New()
	ch := s.Changed()
	s.Upsert("k8s", spec("a", "10.0.0.1", nil))
	select {
	case <-ch:
	default:
		t.Fatal("Changed not closed by a membership change")
	}
	snap := s.Snapshot()
	s.Upsert("k8s", spec("b", "10.0.0.2", nil))
	if len(snap) != 1 {
		t.Error("an old snapshot changed after a write")
	}
	ch = s.Changed()
	s.Upsert("k8s", spec("b", "10.0.0.2", nil)) // no change
	select {
	case <-ch:
		t.Error("Changed closed without a change")
	default:
	}
}

func TestConcurrentReadersAndWriters(t *testing.T) {
	t.Parallel()
	s := New()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				s.Upsert("k8s", spec(string(rune('a'+w)), "10.0.0.1", map[string]string{"i": string(rune(i))}))
				for _, e := range s.Snapshot() {
					_ = e.Metrics()
				}
			}
		}()
	}
	wg.Wait()
	if len(s.Snapshot()) != 4 {
		t.Errorf("endpoints = %d, want 4", len(s.Snapshot()))
	}
}

// TestChangedAnnouncesReadiness: a source that syncs with no endpoints, or
// stops being synced, changes readiness without changing membership, and
// a waiter on Changed (replica bootstrap) must hear it.
func TestChangedAnnouncesReadiness(t *testing.T) {
	t.Parallel()
	s := New()
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	ch := s.Changed()
	s.Replace("file", nil)
	if !s.Ready() || !closed(ch) {
		t.Fatalf("an empty sync: ready %v, Changed closed %v; want both", s.Ready(), closed(ch))
	}
	ch = s.Changed()
	s.Replace("file", nil) // already ready: nothing to announce
	if closed(ch) {
		t.Error("Changed closed by a sync that changed nothing")
	}
	s.SetSynced("file", false)
	if s.Ready() || !closed(ch) {
		t.Errorf("unsynced: ready %v, Changed closed %v; want not ready, closed", s.Ready(), closed(ch))
	}
}

// TestReadyOnlyWithTheSyncedEndpoints: a reader that sees the store turn
// ready must see the endpoints of the sync that made it ready; readiness
// published first let a request arriving in between find the pool empty
// (seen as a 503 right after start).
func TestReadyOnlyWithTheSyncedEndpoints(t *testing.T) {
	for range 300 {
		s := New()
		seen := make(chan int)
		go func() {
			for !s.Ready() {
			}
			seen <- len(s.Snapshot())
		}()
		s.Replace("file", []endpoint.Spec{{Name: "a", Address: "10.0.0.1", Port: 8000}, {Name: "b", Address: "10.0.0.2", Port: 8000}})
		if n := <-seen; n != 2 {
			t.Fatalf("ready with %d endpoints published, want the 2 just synced", n)
		}
	}
}

// TestUpsertAppliesNodeChange: a Pod is bound to its node after it is
// created, and topology plugins read the node from the store's endpoint.
func TestUpsertAppliesNodeChange(t *testing.T) {
	t.Parallel()
	s := New()
	unscheduled := spec("a", "10.0.0.1", nil)
	s.Upsert("k8s", unscheduled)
	a, _ := s.Get("a")
	m := &endpoint.Metrics{WaitingQueueSize: 3, UpdateTime: time.Now()}
	a.SetMetrics(m)
	bound := unscheduled
	bound.Node = "node-1"
	s.Upsert("k8s", bound)
	got, _ := s.Get("a")
	if got.Node != "node-1" || got.Metrics() != m {
		t.Errorf("after binding: node %q, metrics kept %v; want node-1, kept", got.Node, got.Metrics() == m)
	}
	moved := bound
	moved.Node = "node-2"
	s.Replace("k8s", []endpoint.Spec{moved})
	if got, _ := s.Get("a"); got.Node != "node-2" {
		t.Errorf("after Replace: node %q, want node-2", got.Node)
	}
}

// TestSameSpecComparesEveryField guards sameSpec against a field added to
// endpoint.Spec later: a change of any field must count as a change.
func TestSameSpecComparesEveryField(t *testing.T) {
	t.Parallel()
	base := endpoint.Spec{Name: "a", Namespace: "ns", Pod: "p", Node: "n", Address: "10.0.0.1", Port: 8000,
		MetricsPort: 9000, Labels: map[string]string{"k": "v"}}
	typ := reflect.TypeFor[endpoint.Spec]()
	for i := range typ.NumField() {
		changed := base
		changed.Labels = maps.Clone(base.Labels)
		f := reflect.ValueOf(&changed).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(f.String() + "x")
		case reflect.Int:
			f.SetInt(f.Int() + 1)
		case reflect.Map:
			f.SetMapIndex(reflect.ValueOf("k"), reflect.ValueOf("changed"))
		default:
			t.Fatalf("field %s: kind %s not handled by this test", typ.Field(i).Name, f.Kind())
		}
		if sameSpec(base, changed) {
			t.Errorf("sameSpec ignores a change of %s", typ.Field(i).Name)
		}
	}
	if !sameSpec(base, base) {
		t.Error("sameSpec(x, x) is false")
	}
}
