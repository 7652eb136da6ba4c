package fleet

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scorers"
)

// dispatchRecorder is a DispatchSharer that keeps the publisher it is
// given and every batch it is applied.
type dispatchRecorder struct {
	pub     scheduler.DispatchPublisher
	batches [][]scheduler.Dispatch
}

func (r *dispatchRecorder) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: "recorder", Name: "recorder"}
}
func (r *dispatchRecorder) SetDispatchPublisher(p scheduler.DispatchPublisher) { r.pub = p }
func (r *dispatchRecorder) ApplyDispatches(ds []scheduler.Dispatch) {
	r.batches = append(r.batches, slices.Clone(ds))
}

// TestSyncDeliversDispatches: dispatches travel with the insertions of
// their flush window (at the next tick plus the latency), reach every
// replica but their own in publication order, and a real queue-scorer
// counts them.
func TestSyncDeliversDispatches(t *testing.T) {
	t.Parallel()
	ep := endpoint.New(endpoint.Spec{Name: "s", Address: "10.0.0.1", Port: 8000})
	clock := &virtualClock{}
	replicas := make([]syncedPlugins, 3)
	recs := make([]*dispatchRecorder, 3)
	queues := make([]*scorers.QueueDepth, 3)
	for k := range replicas {
		p, err := prefix.NewProducer("approx-prefix-cache-producer", prefix.DefaultParams(),
			&scheduler.Handle{Endpoints: func() []*endpoint.Endpoint { return []*endpoint.Endpoint{ep} }})
		if err != nil {
			t.Fatal(err)
		}
		recs[k], queues[k] = &dispatchRecorder{}, scorers.NewQueueDepth("queue-scorer")
		replicas[k] = syncedPlugins{producers: []prefix.Sharer{p}, sharers: []scheduler.DispatchSharer{queues[k], recs[k]}}
	}
	l := newSyncLog(clock, Replication{Replicas: 3, ReplicaSync: true, SyncFlush: 20 * time.Millisecond, SyncLatency: time.Millisecond}, replicas)
	dispatch := func(at time.Duration, from int, hostPort string) scheduler.Dispatch {
		clock.now = at
		d := scheduler.Dispatch{Plugin: "queue-scorer", HostPort: hostPort, At: clock.Now()}
		recs[from].pub.PublishDispatch(d)
		return d
	}
	d1 := dispatch(5*time.Millisecond, 0, ep.HostPort)
	publisherOf{log: l, from: 0}.Publish(prefix.Insertion{Producer: "approx-prefix-cache-producer", HostPort: ep.HostPort,
		BlockSizeTokens: 16, Hashes: []uint64{1, 2}})
	d2 := dispatch(6*time.Millisecond, 0, "10.0.0.2:8000")
	d3 := dispatch(12*time.Millisecond, 2, ep.HostPort)
	d4 := dispatch(20*time.Millisecond, 1, ep.HostPort) // on the tick: waits for the next
	type view struct {
		Blocks, Counted int
		Batches         [][]scheduler.Dispatch
	}
	at := func(now time.Duration) []view {
		clock.now = now
		var out []view
		for k := range replicas {
			l.deliver(k)
			out = append(out, view{replicas[k].producers[0].(*prefix.Producer).Index().Len(),
				queues[k].DumpState().(scorers.QueueDepthState).TotalUnscrapedDispatches, recs[k].batches})
		}
		return out
	}
	if diff := cmp.Diff([]view{{}, {}, {}}, at(21*time.Millisecond-1)); diff != "" {
		t.Errorf("before the tick + latency (-want +got):\n%s", diff)
	}
	want := []view{
		{0, 1, [][]scheduler.Dispatch{{d3}}},
		{2, 3, [][]scheduler.Dispatch{{d1, d2, d3}}},
		{2, 2, [][]scheduler.Dispatch{{d1, d2}}},
	}
	if diff := cmp.Diff(want, at(21*time.Millisecond)); diff != "" {
		t.Errorf("at the tick + latency (-want +got):\n%s", diff)
	}
	want[0].Counted, want[0].Batches = 2, append(want[0].Batches, []scheduler.Dispatch{d4})
	want[2].Counted, want[2].Batches = 3, append(want[2].Batches, []scheduler.Dispatch{d4})
	if diff := cmp.Diff(want, at(41*time.Millisecond)); diff != "" {
		t.Errorf("at the next tick + latency (-want +got):\n%s", diff)
	}
}

// smallMultiTurn is W6 at 4 s after its warm-up, a fraction of a second
// to run.
func smallMultiTurn(t *testing.T) Workload {
	t.Helper()
	w, err := WorkloadByName("multi-turn")
	if err != nil {
		t.Fatal(err)
	}
	w.Duration = 4 * time.Second
	return w
}

// TestReplicaSyncSharesDispatches: with SyncDispatches every replica's
// real queue-scorer publishes its dispatches and they change the
// decisions; sync without it and upstream-default share none.
func TestReplicaSyncSharesDispatches(t *testing.T) {
	t.Parallel()
	w := smallMultiTurn(t)
	w.Duration = time.Second
	ours := ConfigPolicy(PolicyOursDefault, "", []byte(config.DefaultText))
	up, _ := Builtin(PolicyUpstreamDefault)
	indexOnly := Replication{Replicas: 3, ReplicaSync: true}
	full := indexOnly
	full.SyncDispatches = true
	type shared struct{ Producers, Sharers, DispatchesFrom []int }
	run := func(p Policy, r Replication) (shared, StageResult) {
		s, res := runSim(t, RunSpec{Workload: w, Policy: p, QPS: 2000, Seed: 1, Replication: r})
		res.WallSeconds = 0
		l := s.router.(*replicated).sync
		got := shared{DispatchesFrom: []int{0, 0, 0}}
		for _, sp := range l.replicas {
			got.Producers, got.Sharers = append(got.Producers, len(sp.producers)), append(got.Sharers, len(sp.sharers))
			for _, d := range sp.sharers {
				if d.TypedName().Type != scorers.QueueDepthType {
					t.Errorf("%s: sharer %v", p.Name, d.TypedName())
				}
			}
		}
		for _, e := range l.entries {
			if e.isDispatch {
				got.DispatchesFrom[e.from] = 1
			}
		}
		return got, *res
	}
	gotFull, resFull := run(ours, full)
	gotIndex, resIndex := run(ours, indexOnly)
	gotUp, _ := run(up, full)
	for name, c := range map[string]struct{ got, want shared }{
		"full":             {gotFull, shared{[]int{1, 1, 1}, []int{1, 1, 1}, []int{1, 1, 1}}},
		"index-only":       {gotIndex, shared{[]int{1, 1, 1}, []int{0, 0, 0}, []int{0, 0, 0}}},
		"upstream-default": {gotUp, shared{[]int{0, 0, 0}, []int{0, 0, 0}, []int{0, 0, 0}}},
	} {
		if diff := cmp.Diff(c.want, c.got); diff != "" {
			t.Errorf("%s: plugins synced and dispatches published (-want +got):\n%s", name, diff)
		}
	}
	if cmp.Equal(resFull, resIndex) {
		t.Error("full and index-only sync gave identical results: the shared dispatches changed no decision")
	}
}

// TestReplicaSyncRecoversOneEPP: on multi-turn chat at one EPP's knee,
// three replicas that share nothing lose throughput (each sees a third of
// every chat's turns); synced every 5 ms (the default) they match one EPP,
// and synced every 250 ms they keep at least what apart ones do and at most
// what 5 ms does. (Before queue-scorer's relativeMinSpread, 250 ms lost
// about a fifth here; with it, this small run loses nothing at 250 ms: see
// the replica study for the full workload.)
func TestReplicaSyncRecoversOneEPP(t *testing.T) {
	t.Parallel()
	spec := RunSpec{Workload: smallMultiTurn(t), Policy: ConfigPolicy(PolicyOursDefault, "", []byte(config.DefaultText)), QPS: 600, Seed: 1}
	one := replicaRun(t, spec, Replication{})
	apart := replicaRun(t, spec, Replication{Replicas: 3})
	synced := replicaRun(t, spec, Replication{Replicas: 3, ReplicaSync: true, SyncFlush: 5 * time.Millisecond})
	slow := replicaRun(t, spec, Replication{Replicas: 3, ReplicaSync: true, SyncFlush: 250 * time.Millisecond})
	t.Logf("output tok/s: one EPP %.0f; three apart %.0f, synced every 5 ms %.0f, every 250 ms %.0f",
		one.OutputTokensPerS, apart.OutputTokensPerS, synced.OutputTokensPerS, slow.OutputTokensPerS)
	if apart.OutputTokensPerS > 0.8*one.OutputTokensPerS {
		t.Errorf("three replicas apart: %.0f output tok/s, want at least 20 %% below one EPP's %.0f", apart.OutputTokensPerS, one.OutputTokensPerS)
	}
	if r := synced.OutputTokensPerS / one.OutputTokensPerS; r < 0.95 || r > 1.05 {
		t.Errorf("synced every 5 ms: %.0f output tok/s, want within 5 %% of one EPP's %.0f", synced.OutputTokensPerS, one.OutputTokensPerS)
	}
	if slow.OutputTokensPerS > 1.02*synced.OutputTokensPerS || slow.OutputTokensPerS < apart.OutputTokensPerS {
		t.Errorf("synced every 250 ms: %.0f output tok/s, want between apart (%.0f) and 5 ms (%.0f)", slow.OutputTokensPerS, apart.OutputTokensPerS, synced.OutputTokensPerS)
	}
}
