package fleet

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
)

// replicaRun runs spec with r and returns its stage without the wall time.
func replicaRun(t *testing.T, spec RunSpec, r Replication) StageResult {
	t.Helper()
	spec.Replication = r
	res, err := Run(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	res.WallSeconds = 0
	return *res
}

// smallSharedPrefix is W1 at 5 s after 300 warm-up requests: long enough
// for the prefix indexes to matter, a few hundredths of a second to run.
func smallSharedPrefix(t *testing.T) Workload {
	t.Helper()
	w, err := WorkloadByName("shared-prefix")
	if err != nil {
		t.Fatal(err)
	}
	w.Duration, w.WarmupRequests, w.MinSeeds = 5*time.Second, 300, 0
	return w
}

// TestOneReplicaIsOneEPP: Replicas unset, 1, and 1 with sync give the same
// results, bit for bit, for configs (flow control and P/D included) and
// baselines.
func TestOneReplicaIsOneEPP(t *testing.T) {
	t.Parallel()
	sp := tiny(smallSharedPrefix(t))
	classes, err := ParseClasses(DefaultPriorityClasses)
	if err != nil {
		t.Fatal(err)
	}
	up, _ := Builtin(PolicyUpstreamDefault)
	pd := DisaggArms()[1]
	specs := map[string]RunSpec{
		"ours-best":        {Workload: sp, Policy: ConfigPolicy(PolicyOursBest, "", recommended(t)), QPS: 200, Seed: 3},
		"upstream-default": {Workload: sp, Policy: up, QPS: 200, Seed: 3},
		"flow control":     {Workload: sp, Policy: PriorityPolicies()[2], QPS: 480, Seed: 2, Classes: classes},
		"p/d":              {Workload: sp, Policy: pd.Policy, QPS: 200, Seed: 4, PrefillServers: pd.PrefillServers},
	}
	for name, spec := range specs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			unset := replicaRun(t, spec, Replication{})
			for _, r := range []Replication{{Replicas: 1}, {Replicas: 1, ReplicaSync: true, SyncFlush: time.Millisecond}} {
				if diff := cmp.Diff(unset, replicaRun(t, spec, r)); diff != "" {
					t.Errorf("%+v differs from Replicas unset (-unset +got):\n%s", r, diff)
				}
			}
		})
	}
}

func TestReplicasDeterministicForSeed(t *testing.T) {
	t.Parallel()
	spec := RunSpec{Workload: tiny(smallSharedPrefix(t)), Policy: ConfigPolicy(PolicyOursBest, "", recommended(t)), QPS: 160, Seed: 7}
	for _, r := range []Replication{{Replicas: 3}, {Replicas: 3, ReplicaSync: true}} {
		a, b := replicaRun(t, spec, r), replicaRun(t, spec, r)
		if diff := cmp.Diff(a, b); diff != "" {
			t.Errorf("%+v: same seed, different results (-first +second):\n%s", r, diff)
		}
		other := spec
		other.Seed = 8
		if cmp.Equal(a, replicaRun(t, other, r)) {
			t.Errorf("%+v: seeds 7 and 8 gave identical results", r)
		}
	}
}

// TestReplicasCostAndSyncWinsBack: on shared prefixes below saturation,
// three replicas without sync hit the prefix cache far less often than one
// EPP, and with sync (at the default 5 ms, and with no delay at all) hit
// it about as often again.
func TestReplicasCostAndSyncWinsBack(t *testing.T) {
	t.Parallel()
	spec := RunSpec{Workload: smallSharedPrefix(t), Policy: ConfigPolicy(PolicyOursBest, "", recommended(t)), QPS: 120, Seed: 1}
	one := replicaRun(t, spec, Replication{}).CacheHitPct
	apart := replicaRun(t, spec, Replication{Replicas: 3}).CacheHitPct
	synced := replicaRun(t, spec, Replication{Replicas: 3, ReplicaSync: true}).CacheHitPct
	instant := replicaRun(t, spec, Replication{Replicas: 3, ReplicaSync: true, SyncFlush: -1, SyncLatency: -1}).CacheHitPct
	t.Logf("cache hit: one EPP %.1f %%, 3 replicas %.1f %%, synced %.1f %%, synced at once %.1f %%", one, apart, synced, instant)
	if one-apart < 15 {
		t.Errorf("3 replicas without sync hit %.1f %%, one EPP %.1f %%: want at least 15 points less", apart, one)
	}
	if won := (synced - apart) / (one - apart); won < 0.8 {
		t.Errorf("sync won back %.0f %% of the lost hit rate (%.1f %% against %.1f %%), want >= 80 %%", 100*won, synced, one)
	}
	if instant < one-2 {
		t.Errorf("sync with no delay hit %.1f %%, want within 2 points of one EPP's %.1f %%", instant, one)
	}
}

// TestReplicasHoldTheirOwnRequests: with flow control each replica's
// detector counts only the requests it routed, so three replicas at 4 in
// flight per server each let about three times as much into the servers
// as one EPP does: first tokens come sooner, decoding is slower.
func TestReplicasHoldTheirOwnRequests(t *testing.T) {
	t.Parallel()
	w, err := WorkloadByName("no-sharing")
	if err != nil {
		t.Fatal(err)
	}
	w.Duration, w.WarmupRequests = 2*time.Second, 50
	spec := RunSpec{Workload: w, Policy: ConfigPolicy("held", "", flowConfig(4, "  maxRequests: 0\n")), QPS: 400, Seed: 3}
	one, three := replicaRun(t, spec, Replication{}), replicaRun(t, spec, Replication{Replicas: 3})
	if !(three.TTFT.P50 < one.TTFT.P50 && three.TPOT.P50 > one.TPOT.P50) || three.Completed == 0 {
		t.Errorf("3 replicas: TTFT p50 %.0f vs %.0f ms, TPOT p50 %.1f vs %.1f ms; want sooner first tokens, slower decoding",
			three.TTFT.P50, one.TTFT.P50, three.TPOT.P50, one.TPOT.P50)
	}
}

// hookCounter is a replica's router that counts what it hears.
type hookCounter struct{ routed, first, completed int }

func (r *hookCounter) route(*flight) (int, error)                                  { r.routed++; return 0, nil }
func (r *hookCounter) firstToken(*flight)                                          { r.first++ }
func (r *hookCounter) complete(*flight, request.Usage, scheduler.TerminationCause) { r.completed++ }

// TestReplicatedHooksGoToTheRouter: a request's hooks reach the replica
// that routed it, and the simulation hands requests to the replicas in
// turn.
func TestReplicatedHooksGoToTheRouter(t *testing.T) {
	t.Parallel()
	recs := []*hookCounter{{}, {}, {}}
	r := &replicated{replicas: []router{recs[0], recs[1], recs[2]}}
	for _, k := range []uint8{1, 2, 2} {
		f := &flight{replica: k}
		if _, err := r.route(f); err != nil {
			t.Fatal(err)
		}
		r.firstToken(f)
		r.complete(f, request.Usage{}, scheduler.TerminationNatural)
	}
	want := []hookCounter{{}, {1, 1, 1}, {2, 2, 2}}
	for i := range recs {
		if *recs[i] != want[i] {
			t.Errorf("replica %d heard %+v, want %+v", i, *recs[i], want[i])
		}
	}
	spec := RunSpec{Workload: tiny(smallSharedPrefix(t)), Policy: ConfigPolicy(PolicyOursBest, "", recommended(t)), QPS: 100, Seed: 1,
		Replication: Replication{Replicas: 3}}
	s, err := newSim(spec.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.loop(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range s.flights {
		if f := &s.flights[i]; int(f.replica) != i%3 {
			t.Fatalf("request %d went to replica %d, want %d", i, f.replica, i%3)
		}
	}
}

// TestSyncDelivery: an insertion reaches the other replicas at the next
// flush tick after it (one made on a tick waits for the next) plus the
// latency, never its own, and is copied when published.
func TestSyncDelivery(t *testing.T) {
	t.Parallel()
	ep := endpoint.New(endpoint.Spec{Name: "s", Address: "10.0.0.1", Port: 8000})
	clock := &virtualClock{}
	producers := make([][]*prefix.Producer, 3)
	for k := range producers {
		p, err := prefix.NewProducer("approx-prefix-cache-producer", prefix.DefaultParams(),
			&scheduler.Handle{Endpoints: func() []*endpoint.Endpoint { return []*endpoint.Endpoint{ep} }})
		if err != nil {
			t.Fatal(err)
		}
		producers[k] = []*prefix.Producer{p}
	}
	replicas := make([]syncedPlugins, len(producers))
	for k, ps := range producers {
		replicas[k].producers = []prefix.Sharer{ps[0]}
	}
	l := newSyncLog(clock, Replication{Replicas: 3, ReplicaSync: true, SyncFlush: 20 * time.Millisecond, SyncLatency: time.Millisecond}, replicas)
	publish := func(at time.Duration, from int, hashes []uint64) {
		clock.now = at
		publisherOf{log: l, from: from}.Publish(prefix.Insertion{
			Producer: "approx-prefix-cache-producer", HostPort: ep.HostPort, BlockSizeTokens: 16, Hashes: hashes})
	}
	held := func(at time.Duration, want ...int) {
		t.Helper()
		clock.now = at
		var got []int
		for k, ps := range producers {
			l.deliver(k)
			got = append(got, ps[0].Index().Len())
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("at %s: blocks held per replica (-want +got):\n%s", at, diff)
		}
	}
	hashes := []uint64{1, 2, 3}
	publish(5*time.Millisecond, 0, hashes)
	hashes[0], hashes[1], hashes[2] = 7, 8, 9 // the publisher may reuse them
	held(21*time.Millisecond-1, 0, 0, 0)
	held(21*time.Millisecond, 0, 3, 3)
	if m := producers[1][0].Index().Match([]uint64{1, 2, 3}, 16); m.Blocks(ep) != 3 {
		t.Errorf("replica 1 matches %d of the published blocks, want 3", m.Blocks(ep))
	}
	publish(40*time.Millisecond, 2, []uint64{4})
	held(60*time.Millisecond, 0, 3, 3)
	held(61*time.Millisecond, 1, 4, 3)
}
