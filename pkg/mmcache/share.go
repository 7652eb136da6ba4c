package mmcache

import "github.com/openepp/openepp/pkg/prefix"

// Replica sync: each EPP replica routes a share of the traffic, so each
// one alone would remember only its share of where items went. Shared,
// every replica sends an image's next request where any replica sent it.
// An item is one "block" of one token in replica sync's Insertion.

// itemBlockSize is the BlockSizeTokens of this producer's insertions.
const itemBlockSize = 1

// SetPublisher implements prefix.Sharer: pub hears every record of this
// replica's own decisions (never those applied with ApplyRemote); nil
// stops it.
func (p *Producer) SetPublisher(pub prefix.Publisher) {
	if pub == nil {
		p.publisher.Store(nil)
		return
	}
	p.publisher.Store(&pub)
}

// remember records items for hostPort and tells the publisher, if any.
func (p *Producer) remember(hostPort string, items []uint64) {
	p.store.record(hostPort, items, p.capacity)
	if pub := p.publisher.Load(); pub != nil {
		(*pub).Publish(prefix.Insertion{Producer: p.name.Name, HostPort: hostPort, BlockSizeTokens: itemBlockSize, Hashes: items})
	}
}

// ApplyRemote implements prefix.Sharer: another replica's records count
// here as if this replica had routed them. An insertion naming an
// endpoint this replica does not know (it left the pool, or discovery has
// not seen it yet) is skipped and counted in unknown; insertions of other
// producers, or not of items, are ignored.
func (p *Producer) ApplyRemote(batch []prefix.Insertion) (applied, unknown int) {
	if len(batch) == 0 {
		return 0, 0
	}
	var known map[string]bool
	if p.endpoints != nil {
		pool := p.endpoints()
		known = make(map[string]bool, len(pool))
		for _, e := range pool {
			known[e.HostPort] = true
		}
	}
	for _, ins := range batch {
		if ins.Producer != p.name.Name || ins.BlockSizeTokens != itemBlockSize || len(ins.Hashes) == 0 {
			continue
		}
		if known != nil && !known[ins.HostPort] {
			unknown++
			continue
		}
		p.store.record(ins.HostPort, ins.Hashes, p.capacity)
		applied++
	}
	return applied, unknown
}
