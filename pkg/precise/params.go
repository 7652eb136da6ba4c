package precise

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/openepp/openepp/pkg/scheduler"
)

// Params are the precise-prefix-cache-producer parameters, with llm-d's
// names and defaults.
type Params struct {
	TokenProcessorConfig TokenProcessorConfig `json:"tokenProcessorConfig"`
	IndexerConfig        IndexerConfig        `json:"indexerConfig"`
	KVEventsConfig       KVEventsConfig       `json:"kvEventsConfig"`
	SpeculativeIndexing  bool                 `json:"speculativeIndexing" doc:"when a request is sent, count its blocks as held by its target until speculativeTTL passes or the server's events arrive, so a burst of one prefix is not spread before the first events land" default:"false"`
	SpeculativeTTL       scheduler.Duration   `json:"speculativeTTL" doc:"how long a speculative entry counts" default:"2s"`
	// TokenProducerName is OpenEPP's: llm-d reads the request's
	// tokenized prompt from wherever a token-producer put it.
	TokenProducerName      string `json:"tokenProducerName" doc:"the token-producer (instance name) whose token IDs are matched (OpenEPP extension)" default:"token-producer"`
	MaxPrefixBlocksToMatch int    `json:"maxPrefixBlocksToMatch" doc:"match at most this many leading blocks (OpenEPP extension)" default:"8192"`
	SessionManager         string `json:"sessionManager,omitempty" doc:"not supported: refused when set" default:""`
}

// TokenProcessorConfig is llm-d's kvblock token processor configuration.
type TokenProcessorConfig struct {
	BlockSize int    `json:"blockSize" doc:"tokens per block until the servers' events report their own block size, which then wins (the index must cut requests as the engine cuts its cache)" default:"16"`
	HashSeed  string `json:"hashSeed" doc:"folded into every key; need not match the engine's PYTHONHASHSEED, the keys are the EPP's own" default:""`
}

// IndexerConfig is the part of llm-d's indexer configuration that applies
// here; tokenizers and prefix stores belong to token-producer.
type IndexerConfig struct {
	KVBlockIndexConfig   KVBlockIndexConfig `json:"kvBlockIndexConfig"`
	TokenizersPoolConfig json.RawMessage    `json:"tokenizersPoolConfig,omitempty" doc:"accepted for llm-d configs and ignored: token IDs come from token-producer" default:""`
	PrefixStoreConfig    json.RawMessage    `json:"prefixStoreConfig,omitempty" doc:"accepted for llm-d configs and ignored" default:""`
}

// KVBlockIndexConfig is llm-d's kvBlockIndexConfig.
type KVBlockIndexConfig struct {
	InMemoryConfig         InMemoryConfig  `json:"inMemoryConfig"`
	CostAwareMemoryConfig  json.RawMessage `json:"costAwareMemoryConfig,omitempty" doc:"accepted; the in-memory index is used, bounded by inMemoryConfig" default:""`
	RedisConfig            json.RawMessage `json:"redisConfig,omitempty" doc:"not supported: refused when set (each EPP replica keeps its own index from the same events)" default:""`
	EnableMetrics          bool            `json:"enableMetrics" doc:"accepted; the index's metrics are always served" default:"false"`
	MetricsLoggingInterval json.RawMessage `json:"metricsLoggingInterval,omitempty" doc:"accepted and ignored" default:""`
}

// InMemoryConfig bounds the index.
type InMemoryConfig struct {
	Size         int64 `json:"size" doc:"most distinct blocks remembered; stores beyond it are not recorded" default:"100000000"`
	PodCacheSize int   `json:"podCacheSize" doc:"most servers remembered per block" default:"10"`
}

// KVEventsConfig says where events come from.
type KVEventsConfig struct {
	ZMQEndpoint        string             `json:"zmqEndpoint" doc:"the ZeroMQ address the EPP binds and model servers publish to (vLLM --kv-events-config endpoint pointing at the EPP, topic kv@<server address>@<model>)" default:"tcp://*:5557"`
	TopicFilter        string             `json:"topicFilter" doc:"topic prefix subscribed to" default:"kv@"`
	Concurrency        int                `json:"concurrency" doc:"accepted for llm-d configs; each subscription applies its events in order on its own goroutine" default:"4"`
	DiscoverPods       bool               `json:"discoverPods" doc:"connect to every endpoint of the pool at podDiscoveryConfig.socketPort (plus its data-parallel rank: its port's place among its IP's endpoints) instead of binding zmqEndpoint (vLLM binding tcp://*:<port>)" default:"false"`
	PodDiscoveryConfig PodDiscoveryConfig `json:"podDiscoveryConfig"`
	EngineType         string             `json:"engineType" doc:"vllm (sglang's events differ and are refused)" default:"vllm"`
	Tracing            bool               `json:"tracing" doc:"accepted and ignored" default:"false"`
}

// PodDiscoveryConfig is llm-d's per-pod subscription setting.
type PodDiscoveryConfig struct {
	SocketPort int `json:"socketPort" doc:"port a model server publishes its events on; rank r of a data-parallel server (the r-th port of its IP's endpoints) publishes on socketPort + r" default:"5557"`
}

// DefaultParams returns the defaults.
func DefaultParams() Params {
	return Params{
		TokenProcessorConfig: TokenProcessorConfig{BlockSize: 16},
		IndexerConfig: IndexerConfig{KVBlockIndexConfig: KVBlockIndexConfig{
			InMemoryConfig: InMemoryConfig{Size: 100_000_000, PodCacheSize: 10},
		}},
		KVEventsConfig: KVEventsConfig{
			ZMQEndpoint: "tcp://*:5557", TopicFilter: "kv@", Concurrency: 4,
			PodDiscoveryConfig: PodDiscoveryConfig{SocketPort: 5557}, EngineType: "vllm",
		},
		SpeculativeTTL:         scheduler.Duration(2 * time.Second),
		TokenProducerName:      TokenProducerType,
		MaxPrefixBlocksToMatch: 8192,
	}
}

func set(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s != "" && s != "null"
}

func (p *Params) validate() error {
	var errs []error
	if p.TokenProcessorConfig.BlockSize <= 0 || p.TokenProcessorConfig.BlockSize > 1<<16 {
		errs = append(errs, fmt.Errorf("tokenProcessorConfig.blockSize: must be in 1..65536, got %d", p.TokenProcessorConfig.BlockSize))
	}
	kb := p.IndexerConfig.KVBlockIndexConfig
	if set(kb.RedisConfig) {
		errs = append(errs, errors.New("indexerConfig.kvBlockIndexConfig.redisConfig: a shared Redis index is not supported; each EPP replica keeps its own in-memory index from the same events"))
	}
	if kb.InMemoryConfig.Size < 0 || kb.InMemoryConfig.PodCacheSize < 0 {
		errs = append(errs, errors.New("indexerConfig.kvBlockIndexConfig.inMemoryConfig: size and podCacheSize must be >= 0"))
	}
	ev := p.KVEventsConfig
	if ev.EngineType != "" && ev.EngineType != "vllm" {
		errs = append(errs, fmt.Errorf("kvEventsConfig.engineType: only vllm's KV events are read, got %q", ev.EngineType))
	}
	if ev.DiscoverPods && (ev.PodDiscoveryConfig.SocketPort <= 0 || ev.PodDiscoveryConfig.SocketPort > 65535) {
		errs = append(errs, fmt.Errorf("kvEventsConfig.podDiscoveryConfig.socketPort: must be a port, got %d", ev.PodDiscoveryConfig.SocketPort))
	}
	if !ev.DiscoverPods && !strings.HasPrefix(ev.ZMQEndpoint, "tcp://") && !strings.HasPrefix(ev.ZMQEndpoint, "ipc://") {
		errs = append(errs, fmt.Errorf("kvEventsConfig.zmqEndpoint: want tcp://host:port or ipc://path, got %q", ev.ZMQEndpoint))
	}
	if p.SpeculativeTTL <= 0 {
		errs = append(errs, fmt.Errorf("speculativeTTL: must be > 0, got %v", time.Duration(p.SpeculativeTTL)))
	}
	if p.TokenProducerName == "" {
		errs = append(errs, errors.New("tokenProducerName: must name a token-producer"))
	}
	if p.MaxPrefixBlocksToMatch <= 0 {
		errs = append(errs, fmt.Errorf("maxPrefixBlocksToMatch: must be > 0, got %d", p.MaxPrefixBlocksToMatch))
	}
	if p.SessionManager != "" {
		errs = append(errs, errors.New("sessionManager: llm-d's session-manager lookup is not supported; leave it unset"))
	}
	return errors.Join(errs...)
}
