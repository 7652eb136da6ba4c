package prefix

import (
	"fmt"
	"testing"

	"github.com/openepp/openepp/pkg/endpoint"
)

// newEndpoints returns n endpoints on distinct loopback addresses.
func newEndpoints(n int) []*endpoint.Endpoint {
	out := make([]*endpoint.Endpoint, n)
	for i := range out {
		out[i] = endpoint.New(endpoint.Spec{Name: fmt.Sprintf("ep-%d", i), Address: fmt.Sprintf("127.0.%d.%d", i/250, i%250+1), Port: 8000})
	}
	return out
}

func mustIndex(t testing.TB, shards int) *Index {
	t.Helper()
	ix, err := NewIndex(IndexOptions{Shards: shards})
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

// chain returns n block hashes of a synthetic prompt identified by id.
func chain(id string, n int) []uint64 {
	prompt := make([]byte, 0, n*64)
	for i := range n {
		prompt = fmt.Appendf(prompt, "%-64s", fmt.Sprintf("%s/block-%d", id, i))
	}
	return AppendBlockHashes(nil, Seed("m", ""), prompt, 64, n)
}

// blocksOf returns Match's answer for every endpoint in eps.
func blocksOf(m *Match, eps []*endpoint.Endpoint) []int {
	out := make([]int, len(eps))
	for i, e := range eps {
		out[i] = m.Blocks(e)
	}
	return out
}

// lruOf returns e's hashes in every shard, most recent first, shard by shard.
func lruOf(ix *Index, e *endpoint.Endpoint) []uint64 {
	slot, ok := ix.slots.Load().byAddr[e.HostPort]
	if !ok {
		return nil
	}
	var out []uint64
	for _, s := range ix.shards {
		s.mu.RLock()
		if int(slot) < len(s.lists) {
			for i := s.lists[slot].head; i != none; i = s.at(i).next {
				out = append(out, s.at(i).hash)
			}
		}
		s.mu.RUnlock()
	}
	return out
}

// checkInvariants verifies every shard's lists, chains, table and arena.
func checkInvariants(t *testing.T, ix *Index) {
	t.Helper()
	for si, s := range ix.shards {
		s.mu.RLock()
		if err := s.check(); err != nil {
			t.Errorf("shard %d: %v", si, err)
		}
		s.mu.RUnlock()
	}
}

func (s *shard) check() error {
	inLists, err := s.checkLists()
	if err != nil {
		return err
	}
	inChains, err := s.checkChains()
	if err != nil {
		return err
	}
	free := 0
	for i := s.free; i != none; i = s.at(i).next {
		free++
	}
	if inLists != s.n || inChains != s.n || free+s.n != int(s.used) {
		return fmt.Errorf("counts: lists %d, chains %d, n %d, free %d, used %d", inLists, inChains, s.n, free, s.used)
	}
	return nil
}

func (s *shard) checkLists() (int, error) {
	total := 0
	for slot, l := range s.lists {
		n, prev := int32(0), none
		for i := l.head; i != none; i = s.at(i).next {
			e := s.at(i)
			if e.slot != int32(slot) || e.prev != prev {
				return 0, fmt.Errorf("slot %d: entry %d has slot %d prev %d, want %d", slot, i, e.slot, e.prev, prev)
			}
			if prev != none && int32(s.at(prev).seq-e.seq) <= 0 {
				return 0, fmt.Errorf("slot %d: entry %d stamped %d, not older than its predecessor's %d", slot, i, e.seq, s.at(prev).seq)
			}
			prev = i
			n++
		}
		if prev != l.tail || n != l.n || (n > 0 && n > l.cap) {
			return 0, fmt.Errorf("slot %d: tail %d/%d, n %d/%d, cap %d", slot, prev, l.tail, n, l.n, l.cap)
		}
		total += int(n)
	}
	return total, nil
}

// checkChains checks the reverse map: every key reachable, every holder an
// entry of that hash and its slot, no slot twice, vectors of two or more
// holders within their class; it returns the holders counted.
func (s *shard) checkChains() (int, error) {
	total, keys := 0, 0
	for ti, k := range s.table.keys {
		if k == 0 {
			continue
		}
		keys++
		if j, ok := s.table.find(k); !ok || j != ti {
			return 0, fmt.Errorf("key %x unreachable", k)
		}
		one, pairs := s.holders(k)
		if one != none {
			pairs = []int32{s.at(one).slot, one}
		} else if n, class := unpackMeta(s.table.vals[ti].meta); n < 2 || class < minVecClass || 2*n > vecInts(class) {
			return 0, fmt.Errorf("key %x: vector of %d holders in class %d", k, n, class)
		}
		seen := map[int32]bool{}
		for p := 0; p < len(pairs); p += 2 {
			e := s.at(pairs[p+1])
			if e.hash != k || e.slot != pairs[p] || seen[e.slot] {
				return 0, fmt.Errorf("key %x: bad holder entry %d", k, pairs[p+1])
			}
			seen[e.slot] = true
			total++
		}
	}
	if keys != s.table.n {
		return 0, fmt.Errorf("table: %d keys, n %d", keys, s.table.n)
	}
	return total, nil
}
