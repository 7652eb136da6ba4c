// Package pickers holds the built-in pickers: plugins that turn the scored
// candidates of a profile into the ordered target list (the primary endpoint
// first, then fallbacks the proxy may try).
//
// Every picker follows the scheduler.Picker contract: randomness comes only
// from state.Rand, so a run is reproducible for a seed, and the endpoints are
// never modified (the scored slice belongs to the call and may be reordered).
package pickers

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"

	"github.com/openepp/openepp/pkg/scheduler"
)

// Params are the parameters every built-in picker accepts.
type Params struct {
	// MaxNumOfEndpoints is the length of the returned list: the primary
	// target plus fallbacks the proxy tries in order.
	MaxNumOfEndpoints int `json:"maxNumOfEndpoints" doc:"endpoints returned: the target plus fallbacks" default:"1"`
}

func (p *Params) validate() error {
	if p.MaxNumOfEndpoints < 1 {
		return fmt.Errorf("maxNumOfEndpoints: must be >= 1, got %d", p.MaxNumOfEndpoints)
	}
	return nil
}

func decodeParams(raw json.RawMessage) (Params, error) {
	p := Params{MaxNumOfEndpoints: 1}
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return p, err
	}
	return p, p.validate()
}

// errNoScored is returned for an empty scored slice, which the framework
// never passes but an out-of-tree caller might.
var errNoScored = fmt.Errorf("pick from no scored endpoints: %w", scheduler.ErrNoCandidates)

// rankable maps a score to a value that orders totally: NaN, which would
// break every comparison, ranks below everything else.
func rankable(s float64) float64 {
	if math.IsNaN(s) {
		return math.Inf(-1)
	}
	return s
}

// ranked is one candidate of a top-N selection. It outranks another when its
// major key is higher, then its minor key, then its index is lower, so two
// distinct indices are never tied.
type ranked struct {
	major, minor float64
	idx          int
}

func (a ranked) above(b ranked) bool {
	if a.major != b.major {
		return a.major > b.major
	}
	if a.minor != b.minor {
		return a.minor > b.minor
	}
	return a.idx < b.idx
}

// topN keeps the n best candidates offered to it in a heap whose root is the
// worst one kept, so selecting from m candidates costs O(m log n) and n
// entries of memory instead of sorting all m.
type topN struct {
	heap []ranked
}

func newTopN(n int) *topN { return &topN{heap: make([]ranked, 0, n)} }

// offer considers r for the selection.
func (t *topN) offer(r ranked) {
	h := t.heap
	if len(h) < cap(h) {
		h = append(h, r)
		for i := len(h) - 1; i > 0; {
			parent := (i - 1) / 2
			if !h[parent].above(h[i]) {
				break
			}
			h[parent], h[i] = h[i], h[parent]
			i = parent
		}
		t.heap = h
		return
	}
	if !r.above(h[0]) {
		return
	}
	h[0] = r
	siftDown(h)
}

// siftDown restores the heap order after the root was replaced.
func siftDown(h []ranked) {
	for i := 0; ; {
		worst := i
		if l := 2*i + 1; l < len(h) && h[worst].above(h[l]) {
			worst = l
		}
		if r := 2*i + 2; r < len(h) && h[worst].above(h[r]) {
			worst = r
		}
		if worst == i {
			return
		}
		h[i], h[worst] = h[worst], h[i]
		i = worst
	}
}

// best returns the selection, best first.
func (t *topN) best() []ranked {
	slices.SortFunc(t.heap, func(a, b ranked) int {
		if a.above(b) {
			return -1
		}
		return 1 // indices differ, so a and b are never equal
	})
	return t.heap
}
