package replicasync

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

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

// TestPublishAllocs: publishing and sealing allocate nothing once the
// buffers have grown.
func TestPublishAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	n, ins := publisher(t), insertions(8, 64)
	publish := func() {
		for _, i := range ins {
			n.Publish(i)
		}
		n.flush()
	}
	for range 2000 { // until the peer's 4 MiB queue is full
		publish()
	}
	if allocs := testing.AllocsPerRun(50, publish); allocs > 0 {
		t.Errorf("%v allocations per 8 Publish calls and a flush, want 0", allocs)
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
			applyAll(func(string) *prefix.Producer { return dst }, d.insertions)
		}
		if dst.Index().Len() != src.Index().Len() {
			b.Fatalf("copied %d entries of %d", dst.Index().Len(), src.Index().Len())
		}
		b.ReportMetric(float64(fr.read)/1e6, "MB")
	}
}
