package fleet

import (
	"fmt"
	"math"
	"time"
)

// Topology places the fleet's servers on nodes, so that transfers between
// nodes cost more than within one (NVLink) and topology-aware configs
// (topology-extractor reads the endpoint's node) have something to pair by.
// Servers are dealt round-robin: with N nodes server i is on node i mod N,
// so a node holds both prefill and decode servers when the first K servers
// prefill. Zero ServersPerNode: no topology, every transfer at the engine's
// price.
type Topology struct {
	// ServersPerNode is how many servers share a node.
	ServersPerNode int
	// CrossNodeCost multiplies the engine's KV-transfer price for a pull
	// between nodes (default 8: one NIC against NVLink).
	CrossNodeCost float64
}

// DefaultCrossNodeCost is Topology.CrossNodeCost's default.
const DefaultCrossNodeCost = 8

func (t Topology) validate(servers int) error {
	if t.ServersPerNode < 0 || t.ServersPerNode > max(servers, 1) {
		return fmt.Errorf("servers per node: must be in [0, %d], got %d", max(servers, 1), t.ServersPerNode)
	}
	if t.CrossNodeCost != 0 && !(t.CrossNodeCost >= 1 && t.CrossNodeCost <= 1000) {
		return fmt.Errorf("cross-node cost: must be in [1, 1000], got %v", t.CrossNodeCost)
	}
	return nil
}

// nodeOf is server i's node name, "" without topology.
func (s RunSpec) nodeOf(i int) string {
	if s.ServersPerNode == 0 {
		return ""
	}
	nodes := (s.Workload.Servers + s.ServersPerNode - 1) / s.ServersPerNode
	return fmt.Sprintf("node-%d", i%nodes)
}

// transferPrice is the per-token price of a pull between servers a and b:
// 0 (the engine's own) within a node or without topology, else the
// engine's times CrossNodeCost.
func (s *sim) transferPrice(a, b int) time.Duration {
	if s.spec.ServersPerNode == 0 || s.spec.nodeOf(a) == s.spec.nodeOf(b) {
		return 0
	}
	cost := s.spec.CrossNodeCost
	if cost == 0 {
		cost = DefaultCrossNodeCost
	}
	return time.Duration(math.Round(float64(s.engCfg.KVTransferPerToken) * cost))
}
