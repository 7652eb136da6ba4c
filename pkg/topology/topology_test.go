package topology

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/inflight"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

func TestShared(t *testing.T) {
	a := Location{Host: "h1", Rack: "r1", Zone: "z1", Region: "eu"}
	for _, tc := range []struct {
		b    Location
		want Level
	}{
		{Location{Host: "h1", Rack: "r1", Zone: "z1", Region: "eu"}, Host},
		{Location{Host: "h2", Rack: "r1", Zone: "z1", Region: "eu"}, Rack},
		{Location{Host: "h2", Rack: "r2", Zone: "z1", Region: "eu"}, Zone},
		{Location{Host: "h2", Zone: "z2", Region: "eu"}, Region},
		{Location{Host: "h2", Zone: "z2", Region: "us"}, Apart},
		{Location{}, Apart},
	} {
		if got := Shared(a, tc.b); got != tc.want {
			t.Errorf("Shared(%+v, %+v) = %v, want %v", a, tc.b, got, tc.want)
		}
	}
	if got := Shared(Location{}, Location{}); got != Apart {
		t.Errorf("two unknown locations share %v; unknown must never match", got)
	}
	for _, s := range []string{"host", "Rack", "ZONE", "region"} {
		if _, err := ParseLevel(s); err != nil {
			t.Error(err)
		}
	}
	if _, err := ParseLevel("datacenter"); err == nil {
		t.Error("an unknown level parsed")
	}
}

// node returns an endpoint on node with labels.
func node(i int, nodeName string, labels map[string]string) *endpoint.Endpoint {
	return endpoint.New(endpoint.Spec{Name: fmt.Sprintf("e%d", i), Namespace: "ns", Pod: fmt.Sprintf("pod-%d", i), Node: nodeName,
		Address: fmt.Sprintf("10.0.0.%d", i+1), Port: 8000, Labels: labels})
}

func TestLocate(t *testing.T) {
	zoned := map[string]string{zoneLabel: "z1", regionLabel: "eu", "slice": "s1", "rack": "r9"}
	def := NewExtractor("x", ExtractorParams{Zone: zoneLabel, Region: regionLabel})
	if got, want := def.Locate(node(0, "n1", zoned)), (Location{Host: "n1", Zone: "z1", Region: "eu"}); got != want {
		t.Errorf("defaults: %+v, want %+v", got, want)
	}
	if got := def.Locate(node(0, "", nil)); got.Host != "pod-0" {
		t.Errorf("without a node the pod is the host, got %+v", got)
	}
	if got := def.Locate(endpoint.New(endpoint.Spec{Address: "10.0.0.1", Port: 8000})); got.Known() {
		t.Errorf("a static endpoint without labels is located at %+v", got)
	}
	byLabel := NewExtractor("x", ExtractorParams{HostnameLabel: "slice", Rack: "rack"})
	if got, want := byLabel.Locate(node(0, "n1", zoned)), (Location{Host: "s1", Rack: "r9"}); got != want {
		t.Errorf("labels: %+v, want %+v", got, want)
	}
	if got := byLabel.Locate(node(0, "n1", nil)); got.Host != "" {
		t.Errorf("a configured host label absent on the endpoint gives host %q; want unknown, not the node", got.Host)
	}
}

// pdPool is six endpoints: hosts h0 (e0, e1), h1 (e2, e3) in rack r0, and
// h2 (e4, e5) in rack r1, all in one zone.
func pdPool() []*endpoint.Endpoint {
	var eps []*endpoint.Endpoint
	for i := range 6 {
		eps = append(eps, node(i, "", map[string]string{"host": fmt.Sprintf("h%d", i/2), "rack": fmt.Sprintf("r%d", i/4), zoneLabel: "z"}))
	}
	return eps
}

func resolved(t *testing.T, p scheduler.Plugin, plugins ...scheduler.Plugin) {
	t.Helper()
	x := NewExtractor("topology-extractor", ExtractorParams{Hostname: "host", Rack: "rack", Zone: zoneLabel})
	byName := map[string]scheduler.Plugin{x.TypedName().Name: x}
	for _, q := range plugins {
		byName[q.TypedName().Name] = q
	}
	h := (&scheduler.Handle{}).WithLookup(func(name string) (scheduler.Plugin, bool) { q, ok := byName[name]; return q, ok })
	if err := p.(scheduler.Resolver).Resolve(h); err != nil {
		t.Fatal(err)
	}
}

func withPeer(peer *endpoint.Endpoint) *scheduler.State {
	st := plugintest.State(1)
	if peer != nil {
		scheduler.PeerEndpoint.Set(st, peer)
	}
	return st
}

func TestScorerFollowsThePeer(t *testing.T) {
	eps := pdPool()
	pl, err := ScorerFactory("s", json.RawMessage(`{"topologyProducerName":"topology-extractor"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	resolved(t, pl)
	s := pl.(*Scorer)
	got := s.Score(context.Background(), withPeer(eps[0]), nil, eps)
	want := []float64{1, 1, 0.2, 0.2, 0.05, 0.05}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("scores %v, want %v", got, want)
	}
	if got := s.Score(context.Background(), withPeer(nil), nil, eps); fmt.Sprint(got) != fmt.Sprint(make([]float64, 6)) {
		t.Errorf("without a peer: %v, want zeros", got)
	}
	plugintest.Scorer(t, s, plugintest.Request("m", 100))
}

func TestFilterKeepsNearCandidatesAndFailsOpen(t *testing.T) {
	eps := pdPool()
	filter := func(raw string, plugins ...scheduler.Plugin) *Filter {
		t.Helper()
		pl, err := FilterFactory("f", json.RawMessage(raw), nil)
		if err != nil {
			t.Fatal(err)
		}
		resolved(t, pl, plugins...)
		return pl.(*Filter)
	}
	names := func(eps []*endpoint.Endpoint) string {
		var s []string
		for _, e := range eps {
			s = append(s, e.Name)
		}
		return strings.Join(s, ",")
	}
	ctx := context.Background()
	host := filter(`{"topologyProducerName":"topology-extractor"}`)
	if got := names(host.Filter(ctx, withPeer(eps[2]), nil, eps)); got != "e2,e3" {
		t.Errorf("minAffinity host, peer on h1: kept %s, want e2,e3", got)
	}
	rack := filter(`{"topologyProducerName":"topology-extractor","minAffinity":"rack"}`)
	if got := names(rack.Filter(ctx, withPeer(eps[0]), nil, eps)); got != "e0,e1,e2,e3" {
		t.Errorf("minAffinity rack, peer in r0: kept %s", got)
	}
	if got := names(host.Filter(ctx, withPeer(eps[0]), nil, eps[2:])); got != "e2,e3,e4,e5" {
		t.Errorf("no candidate on the peer's host: kept %s, want all (fail open)", got)
	}
	if got := names(host.Filter(ctx, withPeer(nil), nil, eps)); got != names(eps) {
		t.Errorf("no peer: kept %s, want all", got)
	}

	// The load gate: the near candidates carry 5 requests, the least busy
	// far one 1.
	books := inflight.New(nil, time.Minute)
	for i, n := range []int{5, 6, 1, 3, 2, 2} {
		for range n {
			books.Start(plugintest.State(uint64(i)), eps[i].HostPort, 10)
		}
	}
	tracker := trackerPlugin{books}
	for _, tc := range []struct {
		allowance int
		want      string
	}{{3, names(eps)}, {4, "e0,e1"}} {
		gated := filter(fmt.Sprintf(`{"topologyProducerName":"topology-extractor","loadAllowance":%d}`, tc.allowance), tracker)
		if got := names(gated.Filter(ctx, withPeer(eps[0]), nil, eps)); got != tc.want {
			t.Errorf("loadAllowance %d (near 5, far 1): kept %s, want %s", tc.allowance, got, tc.want)
		}
	}
}

func TestBadParams(t *testing.T) {
	for _, raw := range []string{`{"minAffinity":"datacenter"}`, `{"loadAllowance":-1}`, `{"loadAllowance":1,"inFlightLoadProducerName":""}`, `{"minAfinity":"host"}`} {
		if _, err := FilterFactory("f", json.RawMessage(raw), nil); err == nil {
			t.Errorf("%s accepted", raw)
		}
	}
	pl, _ := ScorerFactory("s", nil, nil)
	if err := pl.(scheduler.Resolver).Resolve(&scheduler.Handle{}); err == nil || !strings.Contains(err.Error(), "topologyProducerName") {
		t.Errorf("resolving with no extractor named: %v", err)
	}
}

// trackerPlugin is an inflight-load-producer as the filter finds it.
type trackerPlugin struct{ t *inflight.Tracker }

func (trackerPlugin) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: inFlightType, Name: inFlightType}
}
func (p trackerPlugin) Tracker() *inflight.Tracker { return p.t }

func TestLocateAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocations are not counted under -race")
	}
	x := NewExtractor("x", ExtractorParams{Zone: zoneLabel, Region: regionLabel})
	e := node(0, "n1", map[string]string{zoneLabel: "z1"})
	if n := testing.AllocsPerRun(100, func() { _ = x.Locate(e) }); n != 0 {
		t.Errorf("Locate allocates %v times a call; it runs for every candidate of every request", n)
	}
}
