package precise

import (
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
)

type stepClock struct{ now time.Time }

func (c *stepClock) Now() time.Time { return c.now }

// TestApplyRemoteSpeculates: another replica's speculative entries count
// here for speculativeTTL; entries this replica cannot use are skipped,
// those naming a server it does not know counted.
func TestApplyRemoteSpeculates(t *testing.T) {
	t.Parallel()
	a, b := ep(8000), ep(8001)
	clock := &stepClock{now: time.Unix(1000, 0)}
	h := &scheduler.Handle{Log: logr.Discard(), Clock: clock, Endpoints: func() []*endpoint.Endpoint { return []*endpoint.Endpoint{a, b} }}
	build := func(speculate bool) *Producer {
		p := DefaultParams()
		p.SpeculativeIndexing = speculate
		pr, err := NewProducer("precise", p, h)
		if err != nil {
			t.Fatal(err)
		}
		return pr
	}
	pr := build(true)
	keys := AppendKeys(nil, pr.index.Root("", ""), seq(1, 48), 16, 0)
	ins := func(producer, hostPort string, bs int) prefix.Insertion {
		return prefix.Insertion{Producer: producer, HostPort: hostPort, BlockSizeTokens: bs, Hashes: keys}
	}
	batch := []prefix.Insertion{
		ins("precise", b.HostPort, 16),
		ins("precise", "10.0.0.9:8000", 16), // not in this replica's pool
		ins("other", a.HostPort, 16),        // another producer's
		ins("precise", a.HostPort, 32),      // cut in other blocks
		{Producer: "precise", HostPort: a.HostPort, BlockSizeTokens: 16},
	}
	if applied, unknown := pr.ApplyRemote(batch); applied != 1 || unknown != 1 {
		t.Fatalf("applied %d, unknown %d; want 1 and 1", applied, unknown)
	}
	held := func() (int, int) {
		m := prefix.NewMatch(len(keys), 16)
		pr.index.Match(m, keys, []*endpoint.Endpoint{a, b}, clock.now.UnixNano())
		return m.Blocks(a), m.Blocks(b)
	}
	if ga, gb := held(); ga != 0 || gb != 3 {
		t.Fatalf("a holds %d blocks, b %d; want 0 and 3", ga, gb)
	}
	clock.now = clock.now.Add(2*time.Second + 1)
	if ga, gb := held(); ga != 0 || gb != 0 {
		t.Errorf("after speculativeTTL a holds %d blocks, b %d; want none", ga, gb)
	}
	if applied, unknown := build(false).ApplyRemote(batch); applied != 0 || unknown != 0 {
		t.Errorf("without speculativeIndexing: applied %d, unknown %d; want none", applied, unknown)
	}
}
