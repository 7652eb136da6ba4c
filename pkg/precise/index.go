package precise

import (
	"sync"
	"sync/atomic"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/kvevents"
	"github.com/openepp/openepp/pkg/prefix"
)

// numShards spreads the key map over locks so that event ingestion (many
// writers, one per server stream) and matching (one reader per request)
// rarely meet on the same lock.
const numShards = 64

// Index records which servers hold which blocks. Safe for concurrent use.
type Index struct {
	seed       uint64
	maxKeys    int64
	maxHolders int

	shards [numShards]shard
	keys   atomic.Int64 // keys with at least one holding
	// speculative counts holdings with a speculative time set, so Expire
	// skips its sweep of every shard when there are none.
	speculative atomic.Int64

	// mu guards the tables below; the request path only reads them.
	mu      sync.RWMutex
	servers map[string]*server // by Endpoint.HostPort
	slots   []*server          // by slot; nil when free
	free    []uint32           // freed slots, reused first
	loras   map[string]struct{}
	// blockSize is the engine block size last reported by any server,
	// the size a request is cut into when its candidates reported none.
	blockSize atomic.Int64
}

type shard struct {
	mu sync.RWMutex
	m  map[uint64][]holding
}

// holding says a server holds a key: refs engine blocks map to it, or a
// routing decision placed it there speculatively until the given time.
type holding struct {
	slot  uint32
	refs  int32
	until int64 // unix nanoseconds; speculative entries only
}

// server is one model server's view: which engine block is which key.
type server struct {
	slot     uint32
	hostPort string

	mu     sync.Mutex
	engine map[kvevents.Hash]uint64
	// blockSize is read under Index.mu, which must not wait for mu:
	// Apply holds mu and may take Index.mu (noteLora).
	blockSize atomic.Int64
	blocks    atomic.Int64
	lastEvent atomic.Int64 // unix nanoseconds (wall clock) of its last batch
	gone      bool         // forgotten; guarded by mu
	// otherGroups are the KV-cache groups a store said are not full
	// attention (newfields.go); guarded by mu.
	otherGroups map[int]bool
}

// IndexOptions bound the index. Zero values mean no bound.
type IndexOptions struct {
	// MaxKeys caps the distinct blocks remembered (llm-d's
	// inMemoryConfig.size); stores beyond it are not recorded.
	MaxKeys int64
	// MaxHolders caps the servers remembered per block (llm-d's
	// podCacheSize).
	MaxHolders int
	// HashSeed is folded into every key (llm-d's hashSeed). Keys are the
	// index's own, so it need not match the engine's PYTHONHASHSEED.
	HashSeed string
}

// NewIndex returns an empty index.
func NewIndex(o IndexOptions) *Index {
	ix := &Index{seed: seedOf(o.HashSeed), maxKeys: o.MaxKeys, maxHolders: o.MaxHolders, servers: map[string]*server{}, loras: map[string]struct{}{}}
	for i := range ix.shards {
		ix.shards[i].m = map[uint64][]holding{}
	}
	return ix
}

func (ix *Index) shardOf(k uint64) *shard { return &ix.shards[k%numShards] }

// serverFor returns hostPort's server, creating it when create is set.
func (ix *Index) serverFor(hostPort string, create bool) *server {
	ix.mu.RLock()
	s := ix.servers[hostPort]
	ix.mu.RUnlock()
	if s != nil || !create {
		return s
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if s := ix.servers[hostPort]; s != nil {
		return s
	}
	s = &server{hostPort: hostPort, engine: map[kvevents.Hash]uint64{}}
	if n := len(ix.free); n > 0 {
		s.slot = ix.free[n-1]
		ix.free = ix.free[:n-1]
		ix.slots[s.slot] = s
	} else {
		s.slot = uint32(len(ix.slots))
		ix.slots = append(ix.slots, s)
	}
	ix.servers[hostPort] = s
	return s
}

func (ix *Index) noteLora(name string) {
	if ix.IsLora(name) {
		return
	}
	ix.mu.Lock()
	ix.loras[name] = struct{}{}
	ix.mu.Unlock()
}

// hold adds one reference from slot to k.
func (ix *Index) hold(slot uint32, k uint64) {
	sh := ix.shardOf(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	hs := sh.m[k]
	if i := holdingOf(hs, slot); i >= 0 {
		hs[i].refs++
		return
	}
	if !ix.admit(hs) {
		return
	}
	sh.m[k] = append(hs, holding{slot: slot, refs: 1})
}

// admit reports whether a new holding may join hs, counting a new key.
func (ix *Index) admit(hs []holding) bool {
	if ix.maxHolders > 0 && len(hs) >= ix.maxHolders {
		return false
	}
	if len(hs) == 0 {
		if ix.maxKeys > 0 && ix.keys.Load() >= ix.maxKeys {
			return false
		}
		ix.keys.Add(1)
	}
	return true
}

// release drops one reference from slot to k.
func (ix *Index) release(slot uint32, k uint64) {
	sh := ix.shardOf(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	hs := sh.m[k]
	i := holdingOf(hs, slot)
	if i < 0 {
		return
	}
	if hs[i].refs > 0 {
		hs[i].refs--
	}
	if hs[i].refs == 0 && hs[i].until == 0 {
		ix.drop(sh, k, hs, i)
	}
}

// drop removes hs[i] from k's holdings; the shard is locked.
func (ix *Index) drop(sh *shard, k uint64, hs []holding, i int) {
	hs[i] = hs[len(hs)-1]
	hs = hs[:len(hs)-1]
	if len(hs) == 0 {
		delete(sh.m, k)
		ix.keys.Add(-1)
		return
	}
	sh.m[k] = hs
}

// Clear forgets everything hostPort holds: its cache was reset, or events
// were lost and what it holds is no longer known.
func (ix *Index) Clear(hostPort string) { ix.clear(hostPort) }

// clear empties hostPort's engine blocks and returns its server, nil when
// unknown.
func (ix *Index) clear(hostPort string) *server {
	s := ix.serverFor(hostPort, false)
	if s == nil {
		return nil
	}
	s.mu.Lock()
	ix.clearLocked(s)
	s.mu.Unlock()
	return s
}

func (ix *Index) clearLocked(s *server) {
	for h, k := range s.engine {
		ix.release(s.slot, k)
		delete(s.engine, h)
	}
	s.blocks.Store(0)
}

// Forget removes hostPort altogether (it left the pool), speculative
// entries included, and frees its slot.
func (ix *Index) Forget(hostPort string) {
	ix.mu.Lock()
	s := ix.servers[hostPort]
	delete(ix.servers, hostPort) // events from now on start a new server
	ix.mu.Unlock()
	if s == nil {
		return
	}
	s.mu.Lock()
	s.gone = true // an Apply that found s before the delete starts over
	ix.clearLocked(s)
	s.mu.Unlock()
	if ix.speculative.Load() > 0 {
		ix.sweep(func(h holding) bool { return h.slot == s.slot })
	}
	ix.mu.Lock()
	ix.slots[s.slot] = nil
	ix.free = append(ix.free, s.slot)
	ix.mu.Unlock()
}

// Speculate records that hostPort will hold keys until the given time
// (unix nanoseconds): the request was just sent there, and its events
// are yet to come.
func (ix *Index) Speculate(hostPort string, keys []uint64, until int64) {
	s := ix.serverFor(hostPort, true)
	for _, k := range keys {
		sh := ix.shardOf(k)
		sh.mu.Lock()
		hs := sh.m[k]
		i := holdingOf(hs, s.slot)
		if i >= 0 {
			if hs[i].until == 0 {
				ix.speculative.Add(1)
			}
			hs[i].until = max(hs[i].until, until)
		} else if ix.admit(hs) {
			sh.m[k] = append(hs, holding{slot: s.slot, until: until})
			ix.speculative.Add(1)
		}
		sh.mu.Unlock()
	}
}

// Expire ends the speculative entries whose time is up, and returns how
// many it ended.
func (ix *Index) Expire(now int64) int {
	if ix.speculative.Load() == 0 {
		return 0
	}
	return ix.sweep(func(h holding) bool { return h.until != 0 && h.until <= now })
}

// sweep ends the speculation of every holding ending says so, dropping
// those with no engine reference left.
func (ix *Index) sweep(ending func(holding) bool) int {
	n := 0
	for i := range ix.shards {
		sh := &ix.shards[i]
		sh.mu.Lock()
		for k, hs := range sh.m {
			for j := 0; j < len(hs); {
				if !ending(hs[j]) || hs[j].until == 0 {
					j++
					continue
				}
				n++
				ix.speculative.Add(-1)
				hs[j].until = 0
				if hs[j].refs > 0 {
					j++
					continue
				}
				hs[j] = hs[len(hs)-1]
				hs = hs[:len(hs)-1]
			}
			if len(hs) == 0 {
				delete(sh.m, k)
				ix.keys.Add(-1)
			} else {
				sh.m[k] = hs
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// Keys returns how many distinct blocks the index holds.
func (ix *Index) Keys() int64 { return ix.keys.Load() }

// Blocks returns how many engine blocks hostPort is known to hold.
func (ix *Index) Blocks(hostPort string) int64 {
	if s := ix.serverFor(hostPort, false); s != nil {
		return s.blocks.Load()
	}
	return 0
}

// IsLora reports whether a server has reported blocks of the adapter name.
func (ix *Index) IsLora(name string) bool {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	_, ok := ix.loras[name]
	return ok
}

// BlockSize returns the engine block size the candidates reported (the
// first one that did), else the one any server last reported, else def.
func (ix *Index) BlockSize(eps []*endpoint.Endpoint, def int) int {
	ix.mu.RLock()
	for _, e := range eps {
		if s := ix.servers[e.HostPort]; s != nil {
			if bs := s.blockSize.Load(); bs > 0 {
				ix.mu.RUnlock()
				return int(bs)
			}
		}
	}
	ix.mu.RUnlock()
	if bs := ix.blockSize.Load(); bs > 0 {
		return int(bs)
	}
	return def
}

// Match sets in m, for each of eps, how many leading keys it holds, a
// speculative holding counting until its time (now, unix nanoseconds).
func (ix *Index) Match(m *prefix.Match, keys []uint64, eps []*endpoint.Endpoint, now int64) {
	if len(keys) == 0 || len(eps) == 0 {
		return
	}
	type cand struct {
		e    *endpoint.Endpoint
		slot uint32
	}
	alive := make([]cand, 0, len(eps))
	ix.mu.RLock()
	for _, e := range eps {
		if s := ix.servers[e.HostPort]; s != nil {
			alive = append(alive, cand{e, s.slot})
		}
	}
	ix.mu.RUnlock()
	for i, k := range keys {
		if len(alive) == 0 {
			return
		}
		sh := ix.shardOf(k)
		sh.mu.RLock()
		hs := sh.m[k]
		kept := alive[:0]
		for _, c := range alive {
			if heldBy(hs, c.slot, now) {
				kept = append(kept, c)
			} else {
				m.Set(c.e, i)
			}
		}
		sh.mu.RUnlock()
		alive = kept
	}
	for _, c := range alive {
		m.Set(c.e, len(keys))
	}
}

func heldBy(hs []holding, slot uint32, now int64) bool {
	i := holdingOf(hs, slot)
	return i >= 0 && (hs[i].refs > 0 || hs[i].until > now)
}

// holdingOf is the index of slot's holding in hs, -1 when it has none.
func holdingOf(hs []holding, slot uint32) int {
	for i := range hs {
		if hs[i].slot == slot {
			return i
		}
	}
	return -1
}
