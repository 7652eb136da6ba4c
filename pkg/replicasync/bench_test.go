package replicasync

import (
	"fmt"
	"testing"

	"github.com/openepp/openepp/pkg/prefix"
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
