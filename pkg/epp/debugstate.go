package epp

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sort"
	"time"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/eviction"
	"github.com/openepp/openepp/pkg/flowcontrol"
	"github.com/openepp/openepp/pkg/poolroute"
	"github.com/openepp/openepp/pkg/scheduler"
)

// Debug pages on the metrics port, beside pprof and under the same
// authentication. Like llm-d's plugin-state page they answer only callers
// on the loopback interface (kubectl port-forward arrives there), since
// they show the pool's inner workings.
const (
	pluginStatePath = "/debug/plugins/state"
	endpointsPath   = "/debug/endpoints"
	flowControlPath = "/debug/flowcontrol"
	replicasPath    = "/debug/replicas"
	poolsPath       = "/debug/pools"
	policiesPath    = "/debug/policies"
)

// flowControlState is the body of /debug/flowcontrol: whether the config
// turns flow control on, and what waits.
type flowControlState struct {
	Enabled bool `json:"enabled"`
	flowcontrol.State
	// Eviction is in-flight eviction's state, absent while it is off.
	Eviction *eviction.State `json:"eviction,omitempty"`
	// Pools are each pool's controller and eviction when the EPP serves
	// several (the fields above are then the first pool's).
	Pools map[string]poolFlowState `json:"pools,omitempty"`
}

// poolFlowState is one pool's flow control on /debug/flowcontrol.
type poolFlowState struct {
	flowcontrol.State
	Eviction *eviction.State `json:"eviction,omitempty"`
}

// poolsState is the body of /debug/pools: the pools the EPP serves, what
// each one's endpoints serve, and the header that names a pool.
type poolsState struct {
	Header string           `json:"header"`
	Pools  []poolroute.Pool `json:"pools"`
}

// pluginState is the body of /debug/plugins/state, in llm-d's shape.
type pluginState struct {
	Timestamp string                      `json:"timestamp"`
	Plugins   map[string]pluginStateEntry `json:"plugins"`
}

type pluginStateEntry struct {
	Type  string          `json:"type"`
	State json.RawMessage `json:"state"`
}

// endpointState is one endpoint as the scheduler sees it.
type endpointState struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace,omitempty"`
	Node      string            `json:"node,omitempty"`
	Pool      string            `json:"pool,omitempty"`
	Address   string            `json:"address"`
	Metrics   string            `json:"metricsAddress"`
	Labels    map[string]string `json:"labels,omitempty"`
	Stale     bool              `json:"stale"`
	// AgeSeconds is how old the metrics are; absent before the first scrape.
	AgeSeconds      *float64 `json:"metricsAgeSeconds,omitempty"`
	WaitingQueue    int      `json:"waitingQueue"`
	Running         int      `json:"runningRequests"`
	KVCacheUsage    float64  `json:"kvCacheUsage"`
	ActiveAdapters  []string `json:"activeAdapters,omitempty"`
	WaitingAdapters []string `json:"waitingAdapters,omitempty"`
	MaxAdapters     int      `json:"maxAdapters,omitempty"`
	// LoRAResidency is where the server holds each adapter ("gpu" or "cpu",
	// "+pinned"); absent when it reports no residency.
	LoRAResidency  map[string]string `json:"loraResidency,omitempty"`
	CacheBlockSize int               `json:"cacheBlockSize,omitempty"`
	CacheNumBlocks int               `json:"cacheNumBlocks,omitempty"`
	// Attributes are what data-layer plugins published (GPU utilization,
	// custom metrics), by attribute key.
	Attributes endpoint.Attributes `json:"attributes,omitempty"`
	// ScrapeFailing is the current run of failed metrics scrapes; absent
	// while scrapes succeed.
	ScrapeFailing *scrapeFailing `json:"scrapeFailing,omitempty"`
}

// scrapeFailing is why an endpoint's metrics are not refreshed: the latest
// failure's reason (openepp_metrics_scrape_errors_total's) and error, how
// long scrapes have failed and how many in a row.
type scrapeFailing struct {
	Reason       string  `json:"reason"`
	Error        string  `json:"error"`
	SinceSeconds float64 `json:"sinceSeconds"`
	Consecutive  int     `json:"consecutive"`
}

// debugHandlers returns the debug pages' handlers; the plugin page reads
// the configuration in force at the time of the request (reloads swap it).
func (a *app) debugHandlers() map[string]http.Handler {
	return map[string]http.Handler{
		pluginStatePath: loopbackGET(func(w http.ResponseWriter, _ *http.Request) {
			a.mu.Lock()
			b := a.built
			a.mu.Unlock()
			state, err := collectPluginState(b, a.now())
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			writeJSON(w, state)
		}),
		endpointsPath: loopbackGET(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, endpointStates(a.store.Snapshot(), a.now()))
		}),
		flowControlPath: loopbackGET(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, a.flow.debugState(a.srv.Admission() != nil))
		}),
		poolsPath: loopbackGET(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, poolsState{Header: a.router.Header(), Pools: a.router.Describe(a.store.Snapshot())})
		}),
		policiesPath: loopbackGET(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, a.policiesState())
		}),
		replicasPath: loopbackGET(func(w http.ResponseWriter, _ *http.Request) {
			if a.replicas == nil {
				writeJSON(w, map[string]bool{"enabled": false})
				return
			}
			writeJSON(w, a.replicas.State())
		}),
	}
}

func collectPluginState(b *config.Built, now time.Time) (pluginState, error) {
	out := pluginState{Timestamp: now.UTC().Format(time.RFC3339Nano), Plugins: map[string]pluginStateEntry{}}
	for _, p := range config.Instances[scheduler.StateDumper](b) {
		name := p.TypedName()
		raw, err := json.Marshal(p.DumpState())
		if err != nil {
			return pluginState{}, fmt.Errorf("plugin %q (%s): encode its state: %w", name.Name, name.Type, err)
		}
		out.Plugins[name.Name] = pluginStateEntry{Type: name.Type, State: raw}
	}
	return out, nil
}

func endpointStates(eps []*endpoint.Endpoint, now time.Time) []endpointState {
	out := make([]endpointState, 0, len(eps))
	for _, e := range eps {
		m := e.Metrics()
		s := endpointState{
			Name: e.Name, Namespace: e.Namespace, Node: e.Node, Pool: e.Pool, Address: e.HostPort, Metrics: e.MetricsHostPort, Labels: e.Labels,
			Stale: e.Stale(), WaitingQueue: m.WaitingQueueSize, Running: m.RunningRequestsSize,
			KVCacheUsage: m.KVCacheUsagePercent, ActiveAdapters: sortedKeys(m.ActiveModels),
			WaitingAdapters: sortedKeys(m.WaitingModels), MaxAdapters: m.MaxActiveModels,
			CacheBlockSize: m.CacheBlockSize, CacheNumBlocks: m.CacheNumBlocks, Attributes: e.AttributesSnapshot(),
			LoRAResidency: residencyState(m.LoRAResidency),
		}
		if !m.UpdateTime.IsZero() {
			age := m.Age(now).Seconds()
			s.AgeSeconds = &age
		}
		if f := e.ScrapeFailure(); f != nil {
			s.ScrapeFailing = &scrapeFailing{Reason: f.Reason, Error: f.Error, SinceSeconds: now.Sub(f.Since).Seconds(), Consecutive: f.Count}
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func sortedKeys(m map[string]int) []string {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// loopbackGET answers GET requests from the loopback interface only.
func loopbackGET(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			http.Error(w, "only GET is allowed here", http.StatusMethodNotAllowed)
			return
		}
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			http.Error(w, "debug pages answer only local callers (use kubectl port-forward)", http.StatusForbidden)
			return
		}
		h(w, r)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, "encode: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(body, '\n'))
}

func residencyState(r map[string]endpoint.LoRAResidence) map[string]string {
	if r == nil {
		return nil
	}
	out := make(map[string]string, len(r))
	for name, where := range r {
		level := "cpu"
		if where.OnGPU {
			level = "gpu"
		}
		if where.Pinned {
			level += "+pinned"
		}
		out[name] = level
	}
	return out
}
