package replicasync

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
)

// publisher returns a node with one peer that nothing sends to (Run is
// not running), so Publish and flush run alone: batches queue for the
// peer until its queue is full, then are dropped and reused.
func publisher(tb testing.TB) *Node {
	tb.Helper()
	n, err := New(Options{Listen: "127.0.0.1:0"})
	if err != nil {
		tb.Fatal(err)
	}
	n.SetPeers([]string{"127.0.0.1:1"})
	return n
}

// insertions returns k insertions of h hashes for distinct endpoints.
func insertions(k, h int) []prefix.Insertion {
	out := make([]prefix.Insertion, k)
	for i := range out {
		hs := make([]uint64, h)
		for j := range hs {
			hs[j] = uint64(i*h + j)
		}
		out[i] = prefix.Insertion{Producer: "prefix", HostPort: fmt.Sprintf("10.0.0.%d:8000", i+1), BlockSizeTokens: 16, Hashes: hs}
	}
	return out
}

// BenchmarkPublish is the request path's cost of replica sync, including
// its share of sealing a batch every 64 insertions.
func BenchmarkPublish(b *testing.B) {
	for _, h := range []int{16, 256} {
		b.Run(fmt.Sprintf("hashes=%d", h), func(b *testing.B) {
			n, ins := publisher(b), insertions(8, h)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				n.Publish(ins[i%len(ins)])
				if i%64 == 63 {
					n.flush()
				}
			}
		})
	}
}

// dispatches returns k dispatches of the queue-scorer to distinct
// endpoints, a millisecond apart.
func dispatches(k int) []scheduler.Dispatch {
	out := make([]scheduler.Dispatch, k)
	at := time.Now()
	for i := range out {
		out[i] = scheduler.Dispatch{Plugin: "queue-scorer", HostPort: fmt.Sprintf("10.0.0.%d:8000", i+1), At: at.Add(time.Duration(i) * time.Millisecond)}
	}
	return out
}

// BenchmarkPublishDispatch is the request path's cost of sharing a
// dispatch, including its share of sealing a batch every 64 of them
// (with one insertion in 8 published beside them when mixed).
func BenchmarkPublishDispatch(b *testing.B) {
	for _, mixed := range []bool{false, true} {
		b.Run(fmt.Sprintf("mixed=%v", mixed), func(b *testing.B) {
			n, ds, ins := publisher(b), dispatches(8), insertions(8, 16)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				n.PublishDispatch(ds[i%len(ds)])
				if mixed && i%8 == 0 {
					n.Publish(ins[i/8%len(ins)])
				}
				if i%64 == 63 {
					n.flush()
				}
			}
		})
	}
}

// TestPublishAllocs: publishing insertions and dispatches and sealing them
// allocate nothing once the buffers have grown.
func TestPublishAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	n, ins, ds := publisher(t), insertions(8, 64), dispatches(8)
	publish := func() {
		for k, i := range ins {
			n.Publish(i)
			n.PublishDispatch(ds[k])
			n.PublishDispatch(ds[len(ds)-1-k])
		}
		n.flush()
	}
	for range 2000 { // until the peer's 4 MiB queue is full
		publish()
	}
	if allocs := testing.AllocsPerRun(50, publish); allocs > 0 {
		t.Errorf("%v allocations per 8 Publish calls, 16 PublishDispatch calls and a flush, want 0", allocs)
	}
}

// BenchmarkSnapshot copies a full default index (100 endpoints × 31,250
// blocks) as a bootstrap does, minus the network: the peer's Export
// written as frames, read back and applied to an empty producer.
func BenchmarkSnapshot(b *testing.B) {
	eps := newEndpoints(100)
	h := &scheduler.Handle{Log: logr.Discard(), Endpoints: func() []*endpoint.Endpoint { return eps }}
	src, err := prefix.NewProducer(producerName, prefix.DefaultParams(), h)
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	hs := make([]uint64, 250)
	for _, e := range eps {
		for range prefix.DefaultLRUCapacityPerServer / len(hs) {
			for i := range hs {
				hs[i] = r.Uint64()
			}
			src.Index().Insert(e, hs, prefix.DefaultLRUCapacityPerServer)
		}
	}
	var stream bytes.Buffer
	for b.Loop() {
		dst, err := prefix.NewProducer(producerName, prefix.DefaultParams(), h)
		if err != nil {
			b.Fatal(err)
		}
		stream.Reset()
		fw := newFrameWriter(&stream, "a", DefaultMaxBatchBytes-headerReserve)
		src.Export(func(batch []prefix.Insertion) bool {
			for _, ins := range batch {
				fw.add(ins)
			}
			fw.seal()
			return true
		})
		fw.end()
		fr := &frameReader{r: &stream, maxFrame: DefaultMaxBatchBytes, maxTotal: DefaultMaxSnapshotBytes}
		for {
			d, err := fr.next()
			if err != nil {
				break
			}
			applyAll(func(string) prefix.Sharer { return dst }, d.insertions)
		}
		if dst.Index().Len() != src.Index().Len() {
			b.Fatalf("copied %d entries of %d", dst.Index().Len(), src.Index().Len())
		}
		b.ReportMetric(float64(fr.read)/1e6, "MB")
	}
}

// BenchmarkBatchRoundTrip is what one flush costs both replicas, in CPU:
// sealing a batch of one 16-hash insertion, POSTing it over loopback
// HTTP/1.1 (keep-alive) and applying it on the peer. cpu-ns/op is the
// process's user+system CPU per batch (both ends are in this process);
// ns/op is the latency until the peer applied it.
func BenchmarkBatchRoundTrip(b *testing.B) {
	eps := newEndpoints(1)
	a, peer := startReplica(b, eps, func(o *Options) { o.FlushInterval = time.Hour }), startReplica(b, eps, nil)
	a.node.SetPeers([]string{peer.addr()})
	ins := insertion("rt", eps[0], 16)
	cpu0 := processCPU()
	for i := 1; b.Loop(); i++ {
		a.node.Publish(ins)
		a.node.flush()
		for peer.state().Applied < uint64(i) {
			time.Sleep(20 * time.Microsecond) // polls without burning the CPU measured
		}
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU is this process's user+system CPU time so far, in ns.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
