package scorers

import "github.com/openepp/openepp/pkg/indexlist"

// sessionTable holds session_id bindings in order of last use, most recent
// first, so that expiry and eviction take from the back and never scan the
// table: a sweep touches only the bindings it removes, and a new session in
// a full table replaces the least recently used one in constant time. (A
// scan of 100,000 bindings held the scorer's write lock for milliseconds,
// stalling every request that scored meanwhile.) It is not safe for
// concurrent use.
type sessionTable struct {
	ids   map[uint64]int32 // hashed session ID -> slot
	slots []sessionSlot    // indexed by the IDs order links
	order indexlist.List   // slots in use, front most recently bound
	free  []int32          // slots not in use
}

type sessionSlot struct {
	key      uint64
	hostPort string
	used     int64 // UnixNano of the last bind
}

func newSessionTable() sessionTable { return sessionTable{ids: map[uint64]int32{}} }

func (t *sessionTable) len() int { return len(t.ids) }

// lookup returns the endpoint bound to key.
func (t *sessionTable) lookup(key uint64) (string, bool) {
	id, ok := t.ids[key]
	if !ok {
		return "", false
	}
	return t.slots[id].hostPort, true
}

// bind binds key to hostPort as used at now, making it the most recent. A
// new key in a table of max bindings first evicts the least recently used
// one; bind reports whether it did.
func (t *sessionTable) bind(key uint64, hostPort string, now int64, max int) (evicted bool) {
	if id, ok := t.ids[key]; ok {
		t.slots[id].hostPort, t.slots[id].used = hostPort, now
		t.order.Remove(id)
		t.order.PushFront(id)
		return false
	}
	for len(t.ids) >= max { // more than one over after a reload lowered maxSessions
		t.remove(t.order.Back())
		evicted = true
	}
	var id int32
	if n := len(t.free); n > 0 {
		id, t.free = t.free[n-1], t.free[:n-1]
	} else {
		id = int32(len(t.slots))
		t.slots = append(t.slots, sessionSlot{})
		t.order.Grow(len(t.slots))
	}
	t.slots[id] = sessionSlot{key: key, hostPort: hostPort, used: now}
	t.ids[key] = id
	t.order.PushFront(id)
	return evicted
}

// expire removes up to limit bindings last used at or before cutoff, the
// oldest first, and returns how many it removed.
func (t *sessionTable) expire(cutoff int64, limit int) int {
	n := 0
	for ; n < limit; n++ {
		id := t.order.Back()
		if id < 0 || t.slots[id].used > cutoff {
			break
		}
		t.remove(id)
	}
	return n
}

func (t *sessionTable) remove(id int32) {
	t.order.Remove(id)
	delete(t.ids, t.slots[id].key)
	t.slots[id] = sessionSlot{} // drop the host string for the collector
	t.free = append(t.free, id)
}

// count adds to into, per address, the bindings in slots [from, to) and
// reports whether that reached the last slot.
func (t *sessionTable) count(from, to int, into map[string]int) bool {
	to = min(to, len(t.slots))
	for _, s := range t.slots[min(from, to):to] {
		if s.hostPort != "" { // a free slot
			into[s.hostPort]++
		}
	}
	return to == len(t.slots)
}
