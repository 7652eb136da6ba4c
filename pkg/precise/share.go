package precise

import (
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/prefix"
)

// Replica sync: every EPP replica receives every server's KV events, but a
// speculative entry is one replica's own routing decision. Sharing them
// tells the other replicas where a burst of one prefix is going before the
// server's events say so, which is what unsynced replicas lose at
// saturation (docs/benchmarks.md, replica study).

var _ prefix.Sharer = (*Producer)(nil)

// SetPublisher implements prefix.Sharer: with speculativeIndexing, pub
// hears every speculative entry this replica's decisions make (never those
// applied with ApplyRemote); nil stops it.
func (p *Producer) SetPublisher(pub prefix.Publisher) {
	if pub == nil {
		p.publisher.Store(nil)
		return
	}
	p.publisher.Store(&pub)
}

// speculate records keys, cut in blocks of bs tokens, as held by hostPort
// until the given time and tells the publisher, if any.
func (p *Producer) speculate(hostPort string, keys []uint64, bs int, until int64) {
	p.index.Speculate(hostPort, keys, until)
	if pub := p.publisher.Load(); pub != nil {
		(*pub).Publish(prefix.Insertion{Producer: p.name.Name, HostPort: hostPort, BlockSizeTokens: bs, Hashes: keys})
	}
}

// ApplyRemote implements prefix.Sharer: another replica's speculative
// entries count here for speculativeTTL from now. An entry naming a server
// this replica does not know is skipped and counted in unknown; entries of
// other producers, of another block size (their keys would never match
// this replica's), or arriving while this replica does not index
// speculatively are ignored.
func (p *Producer) ApplyRemote(batch []prefix.Insertion) (applied, unknown int) {
	if !p.params.SpeculativeIndexing || len(batch) == 0 {
		return 0, 0
	}
	var known map[string]*endpoint.Endpoint
	if p.endpoints != nil {
		pool := p.endpoints()
		known = make(map[string]*endpoint.Endpoint, len(pool))
		for _, e := range pool {
			known[e.HostPort] = e
		}
	}
	until := p.clock.Now().Add(time.Duration(p.params.SpeculativeTTL)).UnixNano()
	for _, ins := range batch {
		if ins.Producer != p.name.Name || len(ins.Hashes) == 0 {
			continue
		}
		var at []*endpoint.Endpoint
		if known != nil {
			e := known[ins.HostPort]
			if e == nil {
				unknown++
				continue
			}
			at = []*endpoint.Endpoint{e}
		}
		// Produce cuts a request by the block size its candidates
		// reported; this replica's view of that server must agree.
		if ins.BlockSizeTokens != p.index.BlockSize(at, p.params.TokenProcessorConfig.BlockSize) {
			continue
		}
		p.index.Speculate(ins.HostPort, ins.Hashes, until)
		applied++
	}
	return applied, unknown
}
