package mmcache

import (
	"slices"
	"sync"
	"testing"

	"github.com/openepp/openepp/pkg/prefix"
)

type recordingPublisher struct {
	mu  sync.Mutex
	got []prefix.Insertion
}

func (r *recordingPublisher) Publish(ins prefix.Insertion) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ins.Hashes = slices.Clone(ins.Hashes) // a publisher must not keep them
	r.got = append(r.got, ins)
}

// TestReplicasShareRecords: what one replica's producer records reaches
// another's through Publish and ApplyRemote, which routes the item's next
// request where the first replica sent it; nothing applied is echoed.
func TestReplicasShareRecords(t *testing.T) {
	t.Parallel()
	pool := eps(3)
	a, b := newProducer(t, "", poolOf(pool)), newProducer(t, "", poolOf(pool))
	pubA, pubB := &recordingPublisher{}, &recordingPublisher{}
	a.SetPublisher(pubA)
	b.SetPublisher(pubB)
	req := chatWith(t, "hi", imagePart("https://x/a.png"), imagePart("https://x/b.png"))
	route(a, req, pool, pool[2], pool[1])
	if len(pubA.got) != 2 {
		t.Fatalf("published %d insertions, want 2 (target and prefill target)", len(pubA.got))
	}
	for _, ins := range pubA.got {
		if ins.Producer != "mm" || ins.BlockSizeTokens != 1 || len(ins.Hashes) != 2 {
			t.Errorf("insertion %+v, want producer mm, block size 1, 2 items", ins)
		}
	}
	batch := append(slices.Clone(pubA.got),
		prefix.Insertion{Producer: "mm", HostPort: "10.9.9.9:8000", BlockSizeTokens: 1, Hashes: []uint64{1}}, // unknown here
		prefix.Insertion{Producer: "other", HostPort: pool[0].HostPort, BlockSizeTokens: 1, Hashes: []uint64{1}},
		prefix.Insertion{Producer: "mm", HostPort: pool[0].HostPort, BlockSizeTokens: 16, Hashes: []uint64{1}},
		prefix.Insertion{Producer: "mm", HostPort: pool[0].HostPort, BlockSizeTokens: 1},
	)
	if applied, unknown := b.ApplyRemote(batch); applied != 2 || unknown != 1 {
		t.Fatalf("applied %d, unknown %d; want 2 and 1", applied, unknown)
	}
	if len(pubB.got) != 0 {
		t.Errorf("applying echoed %d insertions", len(pubB.got))
	}
	m := route(b, chatWith(t, "again", imagePart("https://x/b.png")), pool, pool[0], nil)
	for i, want := range []float64{0, 1, 1} {
		if got := m.Fraction(pool[i]); got != want {
			t.Errorf("replica b, %s: fraction %v, want %v", pool[i].Name, got, want)
		}
	}
	if applied, unknown := b.ApplyRemote(nil); applied != 0 || unknown != 0 {
		t.Error("an empty batch applied something")
	}
	a.SetPublisher(nil)
	route(a, req, pool, pool[0], nil)
	if len(pubA.got) != 2 {
		t.Error("a removed publisher still hears records")
	}
}
