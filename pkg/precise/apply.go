package precise

import (
	"strings"
	"time"

	"github.com/openepp/openepp/pkg/kvevents"
)

// ApplyStats counts what Apply did with a batch's events.
type ApplyStats struct {
	Stored, Removed, Cleared int
	// Orphans are stored blocks whose parent the index never saw (events
	// were missed): their keys cannot be computed, so they are skipped.
	Orphans int
	// OtherTier are events about a tier other than GPU memory (CPU
	// offload), which this index does not track.
	OtherTier int
	// OtherGroup are events about a hybrid model's cache group other than
	// full attention (sliding window, mamba), which it does not track.
	OtherGroup int
	// Malformed are stored events whose tokens do not fill their blocks.
	Malformed int
	// Unknown are events of a kind kvevents could not decode.
	Unknown int
}

// Apply records one batch of hostPort's events, in order.
func (ix *Index) Apply(hostPort string, b *kvevents.Batch) ApplyStats {
	st := ApplyStats{Unknown: b.Unknown}
	s := ix.serverFor(hostPort, true)
	s.mu.Lock()
	for s.gone {
		s.mu.Unlock()
		s = ix.serverFor(hostPort, true)
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	s.lastEvent.Store(time.Now().UnixNano())
	for _, ev := range b.Events {
		switch e := ev.(type) {
		case *kvevents.BlockStored:
			if !gpuTier(e.Medium) {
				st.OtherTier++
				continue
			}
			if !s.indexedGroup(e) {
				st.OtherGroup++
				continue
			}
			ix.store(s, e, &st)
		case *kvevents.BlockRemoved:
			if !gpuTier(e.Medium) {
				st.OtherTier++
				continue
			}
			if !s.removedFromIndexedGroup(e) {
				st.OtherGroup++
				continue
			}
			for i, h := range e.BlockHashes {
				if stillCopied(e, i) {
					continue
				}
				if k, ok := s.engine[h]; ok {
					delete(s.engine, h)
					ix.release(s.slot, k)
					st.Removed++
				}
			}
			s.blocks.Store(int64(len(s.engine)))
		case *kvevents.AllBlocksCleared:
			ix.clearLocked(s)
			st.Cleared++
		}
	}
	return st
}

// gpuTier reports whether medium names device memory; vLLM leaves it
// unset in older versions and says "GPU" in newer ones.
func gpuTier(medium string) bool { return medium == "" || strings.EqualFold(medium, "GPU") }

func (ix *Index) store(s *server, e *kvevents.BlockStored, st *ApplyStats) {
	bs := e.BlockSize
	if bs <= 0 || len(e.TokenIDs) != bs*len(e.BlockHashes) {
		st.Malformed++
		return
	}
	parent := rootKey(ix.seed, e.LoraName)
	if e.LoraName != "" {
		ix.noteLora(e.LoraName)
	}
	if e.HasParent {
		k, ok := s.engine[e.Parent]
		if !ok {
			st.Orphans++
			return
		}
		parent = k
	}
	if s.blockSize.Load() != int64(bs) {
		s.blockSize.Store(int64(bs))
		ix.blockSize.Store(int64(bs))
	}
	for i, h := range e.BlockHashes {
		k := chainKey(extraParent(parent, e, i), e.TokenIDs[i*bs:(i+1)*bs])
		parent = k
		if old, ok := s.engine[h]; ok {
			if old == k {
				continue // reported again: stores are idempotent
			}
			ix.release(s.slot, old)
		}
		s.engine[h] = k
		ix.hold(s.slot, k)
		st.Stored++
	}
	s.blocks.Store(int64(len(s.engine)))
}
