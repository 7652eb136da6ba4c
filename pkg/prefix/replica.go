package prefix

import (
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// Insertion is one routing decision's record in the index: endpoint
// HostPort now holds the blocks Hashes, hashed with blocks of
// BlockSizeTokens. It is what one EPP replica tells the others, so that
// every replica's index reflects the whole gateway's traffic and not only
// the share the proxy happened to send it.
type Insertion struct {
	// Producer is the name of the producer instance that recorded it; a
	// replica applies it to its producer of the same name.
	Producer        string
	HostPort        string
	BlockSizeTokens int
	Hashes          []uint64
}

// Publisher hears every insertion a producer records from its own routing
// decisions (never those applied with ApplyRemote, so replicas do not echo
// each other). Publish runs on the request path: it must be quick and must
// not keep Hashes after it returns.
type Publisher interface {
	Publish(Insertion)
}

// Sharer is a producer whose records replica sync carries between EPP
// replicas as Insertions: this package's Producer (its index insertions)
// and the precise producer (its speculative entries). Names are unique
// within a config, so an insertion's Producer finds its receiver.
type Sharer interface {
	scheduler.Plugin
	// SetPublisher makes pub hear the producer's own records from now on;
	// nil stops it.
	SetPublisher(Publisher)
	// ApplyRemote records another replica's insertions; it must not keep
	// the slice after it returns. It reports how many it applied and how
	// many named an endpoint this replica does not know.
	ApplyRemote([]Insertion) (applied, unknown int)
}

var _ Sharer = (*Producer)(nil)

// SetPublisher makes pub hear this producer's insertions from now on; nil
// stops it.
func (p *Producer) SetPublisher(pub Publisher) {
	if pub == nil {
		p.publisher.Store(nil)
		return
	}
	p.publisher.Store(&pub)
}

// insert records hashes for e and tells the publisher, if any.
func (p *Producer) insert(e *endpoint.Endpoint, hashes []uint64, bs int) {
	p.index.Insert(e, hashes, p.capacity(e, bs))
	if pub := p.publisher.Load(); pub != nil {
		(*pub).Publish(Insertion{Producer: p.name.Name, HostPort: e.HostPort, BlockSizeTokens: bs, Hashes: hashes})
	}
}

// ApplyRemote records insertions another replica made. Each endpoint is
// found in the pool by HostPort and its capacity computed here, from this
// replica's view of it; an insertion naming an endpoint this replica does
// not know (it left the pool, or discovery has not seen it yet) is
// skipped and counted in unknown. Insertions of other producers or with
// no hashes are ignored.
func (p *Producer) ApplyRemote(batch []Insertion) (applied, unknown int) {
	if p.endpoints == nil || len(batch) == 0 {
		return 0, 0
	}
	pool := p.endpoints()
	byAddr := make(map[string]*endpoint.Endpoint, len(pool))
	for _, e := range pool {
		byAddr[e.HostPort] = e
	}
	for _, ins := range batch {
		if ins.Producer != p.name.Name || len(ins.Hashes) == 0 || ins.BlockSizeTokens <= 0 {
			continue
		}
		e := byAddr[ins.HostPort]
		if e == nil {
			unknown++
			continue
		}
		p.index.Insert(e, ins.Hashes, p.capacity(e, ins.BlockSizeTokens))
		applied++
	}
	return applied, unknown
}
