package precise

import (
	"fmt"
	"testing"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/kvevents"
	"github.com/openepp/openepp/pkg/prefix"
)

// BenchmarkMatch is the per-request cost: hashing a 4,096-token prompt
// into 256 keys and matching them over 100 servers, 10 of which hold it.
func BenchmarkMatch(b *testing.B) {
	ix := NewIndex(IndexOptions{})
	prompt := seq(1, 4096)
	eps := make([]*endpoint.Endpoint, 100)
	for i := range eps {
		eps[i] = endpoint.New(endpoint.Spec{Name: fmt.Sprint(i), Address: "10.0.0.1", Port: 8000 + i})
		if i%10 == 0 {
			ix.Apply(eps[i].HostPort, batch(stored(prompt, 16, kvevents.Hash(i*1000+1), 0)))
		}
	}
	keys := make([]uint64, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		keys = AppendKeys(keys[:0], ix.Root("", ""), prompt, 16, 0)
		m := prefix.NewMatch(len(keys), 16)
		ix.Match(m, keys, eps, 0)
	}
}

// BenchmarkApply is the ingestion cost of one engine step's event: 16
// blocks of 16 tokens stored, then removed.
func BenchmarkApply(b *testing.B) {
	ix := NewIndex(IndexOptions{})
	st := batch(stored(seq(1, 256), 16, 1, 0))
	rm := batch(&kvevents.BlockRemoved{BlockHashes: st.Events[0].(*kvevents.BlockStored).BlockHashes})
	b.ReportAllocs()
	for b.Loop() {
		ix.Apply("10.0.0.1:8000", st)
		ix.Apply("10.0.0.1:8000", rm)
	}
}
