// Package endpoint holds the leaf value types every other package shares: a
// model-server endpoint, the metrics snapshot scraped from it and the model
// list it serves.
package endpoint

import (
	"hash/fnv"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"
)

// Spec identifies an endpoint. Two specs with equal fields describe the same
// endpoint; the datastore keeps the existing *Endpoint (and its metrics) when a
// source re-reports an unchanged spec.
type Spec struct {
	// Name is unique in the datastore: "<pod>-rank-<i>" in Kubernetes mode
	// ("<pool>/<pod>-rank-<i>" when the EPP serves several pools), the
	// configured name (or "ip:port") in static mode.
	Name      string
	Namespace string
	// Pod is the owning pod's name; empty for static endpoints.
	Pod string
	// Pool is the InferencePool the endpoint belongs to: the pool's name in
	// Kubernetes pool mode, an endpoints file's "pool", else empty. An EPP
	// serving several pools routes each request among one pool's endpoints.
	Pool string
	// Node is the Kubernetes node the pod runs on (the endpoints file may
	// name one); topology plugins read it as the endpoint's host.
	Node string
	// NodeAddress is that node's IP (the pod's status.hostIP), where
	// node-level exporters such as DCGM's DaemonSet listen; empty when
	// unknown (static endpoints).
	NodeAddress string
	Address     string // IP address, no port
	Port        int
	// MetricsPort is where /metrics is served; 0 means Port.
	MetricsPort int
	Labels      map[string]string
}

// Endpoint is one model-server replica the EPP may route to. Identity fields
// are immutable after New; metrics and the model list are swapped
// atomically by their collectors, so readers never lock.
type Endpoint struct {
	Spec
	// HostPort is net.JoinHostPort(Address, Port), computed once because it is
	// written into every routing answer.
	HostPort string
	// MetricsHostPort is the host:port the scraper targets.
	MetricsHostPort string
	// IPKey and HostPortKey spell the address and host:port one way
	// whatever way the spec spelled them (IPv6 zeros compressed, an
	// IPv4-mapped address as IPv4), so that addresses from the proxy match;
	// the spec's own spelling stays in Address and HostPort. A host name is
	// kept as written.
	IPKey, HostPortKey string
	// HostPortHash is a 64-bit FNV-1a hash of HostPortKey, computed once for
	// plugins that hash an endpoint's identity on every request (rendezvous
	// hashing).
	HostPortHash uint64

	metrics    atomic.Pointer[Metrics]
	attributes atomic.Pointer[Attributes] // nil until a producer publishes one
	stale      atomic.Bool
	models     atomic.Pointer[Models] // nil until collected
	failing    atomic.Pointer[ScrapeFailure]
	derived    atomic.Pointer[[]derivedValue] // Derive's values
}

// New returns an endpoint for spec with empty metrics, marked stale until
// its first successful scrape.
func New(spec Spec) *Endpoint {
	e := &Endpoint{Spec: spec}
	e.HostPort = net.JoinHostPort(spec.Address, strconv.Itoa(spec.Port))
	mp := spec.MetricsPort
	if mp == 0 {
		mp = spec.Port
	}
	e.MetricsHostPort = net.JoinHostPort(spec.Address, strconv.Itoa(mp))
	e.IPKey = CanonicalHost(spec.Address)
	e.HostPortKey = net.JoinHostPort(e.IPKey, strconv.Itoa(spec.Port))
	e.HostPortHash = fnv64a(e.HostPortKey)
	e.metrics.Store(&Metrics{})
	e.stale.Store(true) // nothing scraped yet
	return e
}

// HashHostPort is the HostPortHash of the endpoint at hostPort ("ip:port"
// spelled any way), for books keyed by it that also take addresses from
// elsewhere (another replica's dispatches).
func HashHostPort(hostPort string) uint64 {
	if host, port, err := net.SplitHostPort(hostPort); err == nil {
		return fnv64a(net.JoinHostPort(CanonicalHost(host), port))
	}
	return fnv64a(hostPort)
}

func fnv64a(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}

// CanonicalHost spells an IP address one way (as Endpoint.IPKey); anything
// else is returned as is.
func CanonicalHost(host string) string {
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap().String()
	}
	return host
}

// Metrics returns the latest snapshot; never nil. Callers must not mutate it.
func (e *Endpoint) Metrics() *Metrics { return e.metrics.Load() }

// SetMetrics publishes a new snapshot. m must not be mutated afterwards.
func (e *Endpoint) SetMetrics(m *Metrics) { e.metrics.Store(m) }

// Stale reports whether the endpoint's metrics are older than the staleness
// threshold (or were never scraped successfully). Maintained by the scraper.
func (e *Endpoint) Stale() bool { return e.stale.Load() }

// SetStale records the staleness verdict; it returns true when it changed.
func (e *Endpoint) SetStale(stale bool) bool { return e.stale.Swap(stale) != stale }

// ScrapeFailure is why the endpoint's metrics are not being refreshed: the
// latest scrape's failure, in a run of Count failures since Since.
type ScrapeFailure struct {
	Reason, Error string
	Since         time.Time
	Count         int
}

// ScrapeFailure returns the current run of failed scrapes, or nil while
// scrapes succeed. Maintained by the scraper, for operators.
func (e *Endpoint) ScrapeFailure() *ScrapeFailure { return e.failing.Load() }

// SetScrapeFailure records a run of failed scrapes (nil: scraping works).
// f must not be mutated afterwards.
func (e *Endpoint) SetScrapeFailure(f *ScrapeFailure) { e.failing.Store(f) }

// Label returns the value of label key, or "".
func (e *Endpoint) Label(key string) string { return e.Labels[key] }

// String is the endpoint's address, the form logs and answers use.
func (e *Endpoint) String() string { return e.HostPort }

// Metrics is what a model server reported at UpdateTime. A zero value means
// "nothing known yet".
type Metrics struct {
	WaitingQueueSize    int
	RunningRequestsSize int
	// KVCacheUsagePercent is the fraction of KV-cache blocks in use, 0..1.
	KVCacheUsagePercent float64
	// ActiveModels and WaitingModels are the LoRA adapters running and
	// waiting on the server (value unused, kept as upstream's map shape).
	ActiveModels  map[string]int
	WaitingModels map[string]int
	// MaxActiveModels is the server's GPU adapter slots (vLLM's max_loras).
	MaxActiveModels int
	// LoRAResidency maps every adapter the server holds to where it holds
	// it (vLLM's lora_adapter_loaded family), idle ones included; nil when
	// the server reports no residency. Shared between snapshots: never
	// mutate it.
	LoRAResidency map[string]LoRAResidence
	// GPULoadedAdapters is how many adapters occupy GPU slots.
	GPULoadedAdapters int
	// BaseModel is the model the server serves without an adapter, as its
	// residency gauges name it, or for a LoRA server without them its queue
	// gauge's model_name label; "" when unknown.
	BaseModel string
	// LoRALoadSeconds and LoRAActivateSeconds are the server's mean times to
	// load an adapter into the host cache and to move it from there into a
	// GPU slot; 0 when it has reported none.
	LoRALoadSeconds, LoRAActivateSeconds float64
	// CacheBlockSize is tokens per KV block; CacheNumBlocks the block count.
	CacheBlockSize int
	CacheNumBlocks int
	UpdateTime     time.Time
	// ScrapeInterval is how often the source refreshes these metrics (0 if
	// unknown); freshness checks must allow at least that much age, or an
	// endpoint looks stale between two on-time scrapes.
	ScrapeInterval time.Duration
}

// Age is how old the snapshot is at now; a never-updated snapshot is
// infinitely old.
func (m *Metrics) Age(now time.Time) time.Duration {
	if m.UpdateTime.IsZero() {
		return time.Duration(1<<63 - 1)
	}
	return now.Sub(m.UpdateTime)
}

// KVCacheCapacityTokens is the server's KV capacity in tokens, 0 if unknown.
func (m *Metrics) KVCacheCapacityTokens() int { return m.CacheBlockSize * m.CacheNumBlocks }
