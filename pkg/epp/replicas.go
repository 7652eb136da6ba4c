package epp

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/replicasync"
	"github.com/openepp/openepp/pkg/scheduler"
)

// replicaFlags turn on replica sync: active-active EPP replicas tell each
// other what their prefix-cache indexes recorded, so each index reflects
// the whole gateway's traffic and not only the share the proxy sent to
// that replica.
type replicaFlags struct {
	Port      int
	Peers     string
	Service   string
	PortName  string
	TokenFile string
	Interval  time.Duration
	// Dispatches also shares queue-scorer's dispatches (off: the fleet
	// simulation measured no gain from it, see docs/deploy.md).
	Dispatches bool
}

func (r *replicaFlags) bind(fs *flag.FlagSet) {
	fs.IntVar(&r.Port, "replica-sync-port", -1, "port on which this replica hears the prefix-cache decisions of its peers (-1: replica sync off)")
	fs.StringVar(&r.Peers, "replica-sync-peers", "", "the other replicas' replica-sync addresses, host:port,host:port (no Kubernetes)")
	fs.StringVar(&r.Service, "replica-sync-service", "", "Service whose ready endpoints are the replicas (Kubernetes; its port named by --replica-sync-port-name)")
	fs.StringVar(&r.PortName, "replica-sync-port-name", "replica-sync", "name of the replica-sync port in the Service's EndpointSlices")
	fs.StringVar(&r.TokenFile, "replica-sync-token-file", "", "file holding the secret every replica presents to its peers (read at start)")
	fs.BoolVar(&r.Dispatches, "replica-sync-dispatches", false, "also share the requests each replica's queue-scorer routed since the last scrape "+
		"(experimental: the fleet simulation measured no gain from it)")
	fs.DurationVar(&r.Interval, "replica-sync-interval", replicasync.DefaultFlushInterval, "how often a replica sends its new decisions to its peers (each send costs both ends about 30 µs of CPU)")
}

func (r *replicaFlags) enabled() bool { return r.Port >= 0 }

func (r *replicaFlags) validate(kube bool) []error {
	var errs []error
	if !r.enabled() {
		for name, set := range map[string]bool{"--replica-sync-peers": r.Peers != "", "--replica-sync-service": r.Service != "", "--replica-sync-token-file": r.TokenFile != "",
			"--replica-sync-dispatches": r.Dispatches} {
			if set {
				errs = append(errs, fmt.Errorf("%s needs --replica-sync-port", name))
			}
		}
		return errs
	}
	if r.Peers == "" && r.Service == "" {
		errs = append(errs, errors.New("--replica-sync-port needs --replica-sync-peers or --replica-sync-service to find the other replicas"))
	}
	if r.Peers != "" && r.Service != "" {
		errs = append(errs, errors.New("--replica-sync-peers and --replica-sync-service are mutually exclusive"))
	}
	if r.Service != "" && !kube {
		errs = append(errs, errors.New("--replica-sync-service needs Kubernetes mode (--pool-name or --endpoint-selector)"))
	}
	if r.Interval <= 0 {
		errs = append(errs, fmt.Errorf("--replica-sync-interval must be > 0, got %s", r.Interval))
	}
	if _, err := parsePeers(r.Peers); err != nil {
		errs = append(errs, fmt.Errorf("--replica-sync-peers: %w", err))
	}
	return errs
}

// parsePeers splits a host:port list, refusing entries without a port.
func parsePeers(list string) ([]string, error) {
	var out []string
	for p := range strings.SplitSeq(list, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if i := strings.LastIndexByte(p, ':'); i <= 0 || i == len(p)-1 {
			return nil, fmt.Errorf("%q is not host:port", p)
		}
		out = append(out, p)
	}
	return out, nil
}

// readToken reads the shared secret; surrounding white space (a trailing
// newline from `echo`) is not part of it.
func readToken(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--replica-sync-token-file: %w", err)
	}
	tok := []byte(strings.TrimSpace(string(b)))
	if len(tok) == 0 {
		return nil, fmt.Errorf("--replica-sync-token-file %q is empty", path)
	}
	return tok, nil
}

// addReplicaSync builds the replica-sync node when the flags ask for it,
// listening now so that its address is known before Run (tests use port 0).
func (a *app) addReplicaSync(st *settings, reg prometheus.Registerer) error {
	f := &a.flags.Replicas
	if !f.enabled() {
		return nil
	}
	token, err := readToken(f.TokenFile)
	if err != nil {
		return err
	}
	lis, err := listen(a.flags.BindAddress, f.Port)
	if err != nil {
		return fmt.Errorf("replica-sync %w", err)
	}
	node, err := replicasync.New(replicasync.Options{
		Listener: lis, Token: token, FlushInterval: f.Interval, Dial: st.dial, Bootstrap: true,
		BootstrapReady: a.waitPoolReady,
		Log:            a.log.WithName("replica-sync"), Registerer: reg,
	})
	if err != nil {
		lis.Close()
		return fmt.Errorf("replica sync: %w", err)
	}
	a.replicas = node
	a.addrs.ReplicaSync = lis.Addr().String()
	peers, _ := parsePeers(f.Peers) // validated with the flags
	if len(peers) > 0 {
		node.SetPeers(peers)
	}
	a.attachReplicas(a.built)
	a.background = append(a.background, runnableFunc(node.Run))
	a.log.Info("replica sync on", "address", a.addrs.ReplicaSync, "id", node.ID(), "peers", len(peers), "service", f.Service)
	return nil
}

// waitPoolReady returns once the endpoint source has synced (or ctx ended).
func (a *app) waitPoolReady(ctx context.Context) {
	for {
		changed := a.store.Changed() // before Ready, so no change is missed
		if a.store.Ready() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// runnableFunc runs a Run-style function as background work.
type runnableFunc func(context.Context) error

func (f runnableFunc) Start(ctx context.Context) error { return f(ctx) }

// attachReplicas makes b's prefix producers (approximate ones' insertions,
// precise ones' speculative entries) publish to the peers and receive from
// them; called for the first config and after every reload.
func (a *app) attachReplicas(b *config.Built) {
	if a.replicas == nil {
		return
	}
	producers := map[string]prefix.Sharer{}
	for _, p := range config.Instances[prefix.Sharer](b) {
		producers[p.TypedName().Name] = p
		p.SetPublisher(a.replicas)
	}
	lookup := func(name string) prefix.Sharer {
		if p, ok := producers[name]; ok {
			return p
		}
		return nil // not a nil *Producer in a non-nil interface
	}
	a.replicas.SetProducers(lookup, config.Instances[*prefix.Producer](b)...)
	sharers := map[string]scheduler.DispatchSharer{}
	if a.flags.Replicas.Dispatches {
		for _, s := range config.Instances[scheduler.DispatchSharer](b) {
			sharers[s.TypedName().Name] = s
			s.SetDispatchPublisher(a.replicas)
		}
	}
	a.replicas.SetDispatchSharers(func(name string) scheduler.DispatchSharer { return sharers[name] })
	if len(producers) == 0 && len(sharers) == 0 {
		a.log.Info("replica sync: the config has no approx-prefix-cache-producer, precise-prefix-cache-producer or dispatch-counting plugin, so there is nothing to share")
	}
}
