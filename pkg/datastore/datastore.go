// Package datastore is the EPP's in-memory view of the pool: which endpoints
// exist and, through each endpoint, what they last reported. Readers take an
// immutable snapshot with one atomic load; writers (endpoint sources and the
// metrics scraper) never block readers.
package datastore

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/openepp/openepp/pkg/endpoint"
)

// Store is safe for concurrent use. The zero value is not usable; call New.
type Store struct {
	mu      sync.Mutex
	byName  map[string]*endpoint.Endpoint
	owner   map[string]string // endpoint name -> source that reported it
	synced  map[string]bool   // source -> has completed an initial sync
	changed chan struct{}     // closed and replaced on every membership change

	snapshot atomic.Pointer[[]*endpoint.Endpoint]
	ready    atomic.Bool
}

// New returns an empty store that is not ready.
func New() *Store {
	s := &Store{
		byName:  map[string]*endpoint.Endpoint{},
		owner:   map[string]string{},
		synced:  map[string]bool{},
		changed: make(chan struct{}),
	}
	empty := []*endpoint.Endpoint{}
	s.snapshot.Store(&empty)
	return s
}

// Snapshot returns the current endpoints sorted by name. The slice is shared
// and must not be modified; it stays valid (and unchanged) after later writes.
func (s *Store) Snapshot() []*endpoint.Endpoint { return *s.snapshot.Load() }

// Get returns the endpoint with name, if present.
func (s *Store) Get(name string) (*endpoint.Endpoint, bool) {
	for _, e := range s.Snapshot() {
		if e.Name == name {
			return e, true
		}
	}
	return nil, false
}

// Ready reports whether at least one endpoint source has completed a sync.
// An empty but synced pool is ready: "no endpoints" is then a real answer.
func (s *Store) Ready() bool { return s.ready.Load() }

// Changed returns a channel that is closed at the next membership or
// readiness change.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Upsert adds or updates one endpoint reported by source. An unchanged spec
// keeps the existing *Endpoint so its metrics and plugin state carry over; a
// change that keeps the addresses (labels, node) keeps the metrics.
func (s *Store) Upsert(source string, spec endpoint.Spec) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.upsertLocked(source, spec) {
		s.publishLocked()
	}
}

// Delete removes the endpoint with name, whichever source reported it.
func (s *Store) Delete(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byName[name]; !ok {
		return
	}
	delete(s.byName, name)
	delete(s.owner, name)
	s.publishLocked()
}

// Replace makes specs the complete set of endpoints owned by source: missing
// ones are removed, others upserted. It marks source as synced.
func (s *Store) Replace(source string, specs []endpoint.Spec) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := make(map[string]bool, len(specs))
	dirty := false
	for _, spec := range specs {
		keep[spec.Name] = true
		dirty = s.upsertLocked(source, spec) || dirty
	}
	for name, owner := range s.owner {
		if owner == source && !keep[name] {
			delete(s.byName, name)
			delete(s.owner, name)
			dirty = true
		}
	}
	s.synced[source] = true
	if s.readyChangesLocked() || dirty {
		s.publishLocked()
	}
}

// DeleteSource removes every endpoint reported by source and forgets that it
// synced; the store stops being ready when no synced source remains.
func (s *Store) DeleteSource(source string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dirty := false
	for name, owner := range s.owner {
		if owner == source {
			delete(s.byName, name)
			delete(s.owner, name)
			dirty = true
		}
	}
	delete(s.synced, source)
	if s.readyChangesLocked() || dirty {
		s.publishLocked()
	}
}

// SetSynced records whether source has completed its initial sync.
func (s *Store) SetSynced(source string, synced bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if synced {
		s.synced[source] = true
	} else {
		delete(s.synced, source)
	}
	if s.readyChangesLocked() {
		s.publishLocked()
	}
}

// readyChangesLocked reports whether readiness, which follows the synced
// sources, is about to change (a change to announce through Changed);
// publishLocked makes it.
func (s *Store) readyChangesLocked() bool { return s.ready.Load() != (len(s.synced) > 0) }

func (s *Store) upsertLocked(source string, spec endpoint.Spec) bool {
	old, ok := s.byName[spec.Name]
	s.owner[spec.Name] = source
	if ok && sameSpec(old.Spec, spec) {
		return false
	}
	ep := endpoint.New(spec)
	if ok && old.HostPort == ep.HostPort && old.MetricsHostPort == ep.MetricsHostPort {
		ep.SetMetrics(old.Metrics())
		ep.SetStale(old.Stale())
	}
	if ok && old.HostPort == ep.HostPort {
		ep.SetModels(old.Models()) // served at the same address
	}
	s.byName[spec.Name] = ep
	return true
}

// publishLocked publishes the endpoints, then the readiness: a reader that
// sees the store ready must also see what the sync that made it ready
// brought, or a request arriving right then would find the pool empty.
func (s *Store) publishLocked() {
	list := slices.Collect(maps.Values(s.byName))
	slices.SortFunc(list, func(a, b *endpoint.Endpoint) int { return strings.Compare(a.Name, b.Name) })
	s.snapshot.Store(&list)
	s.ready.Store(len(s.synced) > 0)
	close(s.changed)
	s.changed = make(chan struct{})
}

// sameSpec compares every field of endpoint.Spec; a field left out here
// would never reach the store once its endpoint exists (a test checks).
func sameSpec(a, b endpoint.Spec) bool {
	return a.Name == b.Name && a.Namespace == b.Namespace && a.Pod == b.Pod && a.Pool == b.Pool && a.Node == b.Node && a.NodeAddress == b.NodeAddress &&
		a.Address == b.Address && a.Port == b.Port && a.MetricsPort == b.MetricsPort &&
		maps.Equal(a.Labels, b.Labels)
}
