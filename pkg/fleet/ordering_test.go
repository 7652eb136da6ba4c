package fleet

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The classes of orderingSim, one band.
const (
	interactiveClass uint8 = iota // TTFT objective 250 ms
	bulkClass                     // TTFT objective 10 s
)

// orderingSim is a two-server fleet held to one request per server, whose
// one band is ordered by ordering under global-strict fairness, with no
// arrivals of its own: the test injects requests.
func orderingSim(t *testing.T, ordering string) *sim {
	t.Helper()
	w, err := WorkloadByName("no-sharing")
	if err != nil {
		t.Fatal(err)
	}
	w.Servers = 2
	classes, err := ParseClasses("interactive:1:0:250ms,bulk:1:0:10s")
	if err != nil {
		t.Fatal(err)
	}
	yaml := flowConfigWith(1, 0, "- type: global-strict-fairness-policy\n- type: "+ordering+"\n",
		"  defaultPriorityBand: {fairnessPolicyRef: global-strict-fairness-policy, orderingPolicyRef: "+ordering+"}\n")
	s, err := newSim(RunSpec{Workload: w, Policy: ConfigPolicy(ordering, "", []byte(yaml)), QPS: 1, Seed: 1,
		Classes: classes}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	for i := range s.servers {
		s.publishMetrics(i)
	}
	return s
}

// releaseOrder pops every held request of s's band 0, in the order flow
// control would release them.
func releaseOrder(s *sim) []uint64 {
	q := &s.queues[0]
	b := q.band(0)
	var out []uint64
	for b.n > 0 {
		out = append(out, s.pop(q, b).id)
	}
	return out
}

// TestOrderingPolicyOrdersTheBand: two bulk requests fill the pool; two
// more bulk requests and then an interactive one wait in the one band.
// FCFS releases them in arrival order; slo-deadline releases the later
// interactive request first, its 250 ms objective coming due long before
// the bulk requests' 10 s; EDF orders by the client's deadline from
// arrival, which here is arrival order.
func TestOrderingPolicyOrdersTheBand(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ordering string
		want     []uint64 // ids: 2, 3 bulk, 4 interactive
	}{
		{ordering: "fcfs-ordering-policy", want: []uint64{2, 3, 4}},
		{ordering: "slo-deadline-ordering-policy", want: []uint64{4, 2, 3}},
		{ordering: "edf-ordering-policy", want: []uint64{2, 3, 4}},
	} {
		s := orderingSim(t, tc.ordering)
		inject(t, s, bulkClass)
		inject(t, s, bulkClass)
		for i, c := range []uint8{bulkClass, bulkClass, interactiveClass} {
			drive(t, s, time.Duration(i+1)*10*time.Millisecond)
			if id := inject(t, s, c); s.flights[id].status != flightQueued {
				t.Fatalf("%s: request %d %v in a full pool, want held", tc.ordering, id, s.flights[id].status)
			}
		}
		if diff := cmp.Diff(tc.want, releaseOrder(s)); diff != "" {
			t.Errorf("%s: release order (-want +got):\n%s", tc.ordering, diff)
		}
	}
}

// TestEDFOrdersWithinAFlow: a retried request is enqueued after the
// requests of its flow already waiting but its client's deadline runs from
// its first send, earlier than theirs: EDF puts it first in its flow, FCFS
// last.
func TestEDFOrdersWithinAFlow(t *testing.T) {
	t.Parallel()
	for ordering, want := range map[string][]uint64{
		"fcfs-ordering-policy": {2, 3, 4},
		"edf-ordering-policy":  {4, 2, 3},
	} {
		s := orderingSim(t, ordering)
		inject(t, s, bulkClass)
		inject(t, s, bulkClass)
		drive(t, s, 10*time.Millisecond)
		inject(t, s, bulkClass)
		drive(t, s, 20*time.Millisecond)
		inject(t, s, bulkClass)
		drive(t, s, 30*time.Millisecond)
		p, err := s.src.next(s.rng)
		if err != nil {
			t.Fatal(err)
		}
		s.open++
		s.send(flight{p: p, arrival: 0, measured: true, class: bulkClass, attempt: 1}) // a retry, first sent at 0
		if diff := cmp.Diff(want, releaseOrder(s)); diff != "" {
			t.Errorf("%s: release order (-want +got):\n%s", ordering, diff)
		}
	}
}
