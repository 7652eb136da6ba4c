package prefix

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// recorder is a Publisher keeping copies, as the contract asks.
type recorder struct{ got []Insertion }

func (r *recorder) Publish(ins Insertion) {
	ins.Hashes = slices.Clone(ins.Hashes)
	r.got = append(r.got, ins)
}

// TestReplicaInsertionsTravel: what replica A records from its own
// decisions (primary, prefill, a served fallback) is published, and applied
// on replica B it makes B match the prompt exactly as A does; nothing B
// applies is published again.
func TestReplicaInsertionsTravel(t *testing.T) {
	t.Parallel()
	eps := newEndpoints(4)
	h := &scheduler.Handle{Log: logr.Discard(), Endpoints: func() []*endpoint.Endpoint { return eps }}
	params := Params{BlockSizeTokens: 4, MaxPrefixBlocksToMatch: 256, LRUCapacityPerServer: 1000}
	a, b := newProducer(t, params, h), newProducer(t, params, h)
	var fromA, fromB recorder
	a.SetPublisher(&fromA)
	b.SetPublisher(&fromB)

	prompt := text("a", 640)
	st := scheduler.NewState(1, time.Time{})
	r := req("m", "", prompt)
	a.Produce(context.Background(), st, r, eps)
	a.PreRequest(context.Background(), st, r, result(eps[:2], eps[2]))
	a.ResponseHeaders(context.Background(), st, r, &scheduler.Response{StatusCode: 200, Served: eps[1].HostPort})

	var hosts []string
	for _, ins := range fromA.got {
		hosts = append(hosts, ins.HostPort)
		if ins.Producer != ProducerType || ins.BlockSizeTokens != 4 || len(ins.Hashes) == 0 {
			t.Errorf("insertion %+v: want producer %q, block size 4, hashes", ins, ProducerType)
		}
	}
	if diff := cmp.Diff([]string{eps[0].HostPort, eps[2].HostPort, eps[1].HostPort}, hosts); diff != "" {
		t.Fatalf("published endpoints (-want +got):\n%s", diff)
	}

	unknownIns := Insertion{Producer: ProducerType, HostPort: "10.9.9.9:8000", BlockSizeTokens: 4, Hashes: []uint64{1}}
	otherProducer := Insertion{Producer: "other", HostPort: eps[3].HostPort, BlockSizeTokens: 4, Hashes: []uint64{1}}
	applied, unknown := b.ApplyRemote(append(slices.Clone(fromA.got), unknownIns, otherProducer))
	if applied != 3 || unknown != 1 {
		t.Errorf("ApplyRemote = %d applied, %d unknown; want 3 and 1", applied, unknown)
	}
	if len(fromB.got) != 0 {
		t.Errorf("B republished %d applied insertions", len(fromB.got))
	}
	ma, mb := route(a, eps, req("m", "", prompt), nil), route(b, eps, req("m", "", prompt), nil)
	if diff := cmp.Diff(blocksOf(ma, eps), blocksOf(mb, eps)); diff != "" || !mb.Any() {
		t.Errorf("B's match differs from A's (-A +B):\n%s", diff)
	}

	a.SetPublisher(nil)
	route(a, eps, req("m", "", text("c", 640)), result(eps[3:], nil))
	if len(fromA.got) != 3 {
		t.Errorf("published %d insertions after SetPublisher(nil), want still 3", len(fromA.got))
	}
}

// TestApplyRemoteWithoutPool: a producer with no endpoint source applies
// nothing and does not fail.
func TestApplyRemoteWithoutPool(t *testing.T) {
	t.Parallel()
	pr := newProducer(t, DefaultParams(), nil)
	if applied, unknown := pr.ApplyRemote([]Insertion{{Producer: ProducerType, HostPort: "x:1", BlockSizeTokens: 16, Hashes: []uint64{1}}}); applied != 0 || unknown != 0 {
		t.Errorf("ApplyRemote = %d, %d; want 0, 0", applied, unknown)
	}
}
