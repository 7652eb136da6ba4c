package mmcache

import (
	"errors"
	"fmt"
	"math"
)

// ProducerParams are the mm-embeddings-cache-producer parameters, with
// llm-d's names and default.
type ProducerParams struct {
	CacheSizeInMBPerServer int `json:"cacheSizeInMBPerServer" doc:"memory budget, in MiB per endpoint, of the EPP's LRU of the multimodal items routed there (at an estimated 64 bytes an item: 16,384 items per MiB); it bounds the EPP's memory, not the model server's encoder cache" default:"2048"`
}

// ScorerParams are the mm-embeddings-cache-scorer parameters.
type ScorerParams struct {
	ProducerName string `json:"producerName" doc:"instance name of the mm-embeddings-cache-producer read; empty: the config's only one (created when the config has none)" default:""`
}

// Bounds of cacheSizeInMBPerServer.
const (
	defaultCacheSizeMB = 2048
	maxCacheSizeMB     = 1 << 20 // 1 TiB: far past any real budget, and its item count still fits an int
)

// entryBytes is the estimated memory one remembered item costs: its LRU
// entry (a 64-bit hash and two 32-bit links, 16 bytes) and its slot in the
// hash index (key, value and control byte at the table's load factor,
// about 20 bytes), rounded up for the slack both keep after growing by
// doubling (up to twice that).
const entryBytes = 64

// maxItemsPerServer bounds an LRU by its 32-bit links.
const maxItemsPerServer = math.MaxInt32

// DefaultProducerParams returns the defaults.
func DefaultProducerParams() ProducerParams {
	return ProducerParams{CacheSizeInMBPerServer: defaultCacheSizeMB}
}

func (p *ProducerParams) validate() error {
	if p.CacheSizeInMBPerServer < 1 || p.CacheSizeInMBPerServer > maxCacheSizeMB {
		return fmt.Errorf("cacheSizeInMBPerServer: must be in [1, %d] (MiB of the EPP's memory per endpoint), got %d",
			maxCacheSizeMB, p.CacheSizeInMBPerServer)
	}
	return nil
}

// capacityItems is how many items one endpoint's LRU holds within the
// budget.
func (p *ProducerParams) capacityItems() int {
	return min(p.CacheSizeInMBPerServer*(1<<20/entryBytes), maxItemsPerServer)
}

var errNoProducerName = errors.New("producerName: not set, and the config does not hold exactly one " + ProducerType +
	" to read by default; set producerName to the instance name of the producer to read")
