package epp

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/client/config"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/openepp/openepp/pkg/controller"
	"github.com/openepp/openepp/pkg/server"
)

// KubeFlags are the Kubernetes-mode options, named as upstream names them.
type KubeFlags struct {
	PoolName            string
	PoolNamespace       string
	PoolGroup           string
	EndpointSelector    string
	PickerService       string
	EndpointTargetPorts portList
	Kubeconfig          string
	LeaderElection      bool
}

func (k *KubeFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&k.PoolName, "pool-name", "", "InferencePool to serve (Kubernetes mode); several, comma-separated, share one EPP (docs/deploy.md, \"Several pools\")")
	fs.StringVar(&k.PoolNamespace, "pool-namespace", "", "namespace of the pool and its pods (default: $NAMESPACE, else \"default\")")
	fs.StringVar(&k.PoolGroup, "pool-group", controller.DefaultPoolGroup, "API group of the InferencePool (only v1 is supported)")
	fs.StringVar(&k.EndpointSelector, "endpoint-selector", "", "label selector of model-server pods, for Kubernetes mode without an InferencePool")
	fs.StringVar(&k.PickerService, "endpoint-picker-service", "", "serve every InferencePool of the namespace whose endpointPickerRef names this Service, "+
		"found at run time (instead of --pool-name; docs/deploy.md, \"Several pools\")")
	fs.Var(&k.EndpointTargetPorts, "endpoint-target-ports", "model-server ports with --endpoint-selector, comma-separated or repeated (1 to 8)")
	fs.StringVar(&k.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster, $KUBECONFIG or ~/.kube/config)")
	fs.BoolVar(&k.LeaderElection, "ha-enable-leader-election", false, "active-passive HA: only the Lease holder reports ready; standbys keep a warm datastore")
}

// enabled reports Kubernetes mode.
func (k *KubeFlags) enabled() bool {
	return k.PoolName != "" || k.EndpointSelector != "" || k.PickerService != ""
}

// namespace resolves the pool namespace: flag, then $NAMESPACE, then
// "default".
func (k *KubeFlags) namespace(getenv func(string) string) string {
	if k.PoolNamespace != "" {
		return k.PoolNamespace
	}
	if ns := getenv("NAMESPACE"); ns != "" {
		return ns
	}
	return "default"
}

// leaseName is the leader-election Lease, named as upstream names it so
// replicas of either binary never lead the same pool at once. Without a
// pool the name derives from the selector and ports, with
// --endpoint-picker-service from the Service; with several pools
// it joins their sorted names (hashed when the name would be too long).
func (k *KubeFlags) leaseName(ns string) string {
	pools := slices.Sorted(slices.Values(k.poolNames()))
	name := strings.Join(pools, "-")
	if k.PickerService != "" {
		name = "service-" + k.PickerService
	}
	if len(name) > 150 {
		h := fnv.New32a()
		_, _ = h.Write([]byte(strings.Join(pools, ",")))
		name = fmt.Sprintf("pools-%08x", h.Sum32())
	}
	if name == "" {
		h := fnv.New32a()
		fmt.Fprintf(h, "%s|%v", k.EndpointSelector, []int(k.EndpointTargetPorts))
		name = fmt.Sprintf("selector-%08x", h.Sum32())
	}
	return "epp-" + ns + "-" + name + ".gateway-api-inference-extension.sigs.k8s.io"
}

// errNoSource is the answer to a command line (and config) naming no
// endpoint source.
var errNoSource = errors.New("no endpoint source: give --endpoints or --endpoints-file (no Kubernetes), --pool-name or --endpoint-picker-service (InferencePools), " +
	"--endpoint-selector with --endpoint-target-ports, or a config file whose dataLayer.discovery names a file-discovery plugin")

// validateSource checks that at most one endpoint source mode is chosen and
// that the Kubernetes flags fit it. Choosing none is left to
// checkConfigSource when a config is given: it may name a discovery plugin.
func (f *Flags) validateSource() []error {
	k := &f.Kube
	var modes []string
	if f.Endpoints != "" || f.EndpointsFile != "" {
		modes = append(modes, "--endpoints/--endpoints-file")
	}
	if k.PoolName != "" {
		modes = append(modes, "--pool-name")
	}
	if k.EndpointSelector != "" {
		modes = append(modes, "--endpoint-selector")
	}
	if k.PickerService != "" {
		modes = append(modes, "--endpoint-picker-service")
	}
	var errs []error
	switch len(modes) {
	case 0:
		if f.ConfigFile == "" && f.ConfigText == "" {
			errs = append(errs, errNoSource)
		}
	case 1:
	default:
		errs = append(errs, fmt.Errorf("endpoint sources are mutually exclusive, got %s", strings.Join(modes, " and ")))
	}
	if k.EndpointSelector != "" {
		if _, err := labels.Parse(k.EndpointSelector); err != nil {
			errs = append(errs, fmt.Errorf("--endpoint-selector: %w", err))
		}
		if err := controller.ValidateTargetPorts(k.EndpointTargetPorts); err != nil {
			errs = append(errs, fmt.Errorf("--endpoint-target-ports: %w", err))
		}
	} else if len(k.EndpointTargetPorts) > 0 {
		errs = append(errs, errors.New("--endpoint-target-ports needs --endpoint-selector (with --pool-name the pool's targetPorts apply)"))
	}
	if k.PoolGroup != controller.DefaultPoolGroup {
		errs = append(errs, fmt.Errorf("--pool-group %q is not supported, only %q", k.PoolGroup, controller.DefaultPoolGroup))
	}
	if !k.enabled() && (k.LeaderElection || k.Kubeconfig != "") {
		errs = append(errs, errors.New("--ha-enable-leader-election and --kubeconfig need Kubernetes mode (--pool-name or --endpoint-selector)"))
	}
	return errs
}

// checkConfigSource runs once the config is loaded. A discovery plugin it
// names (dataLayer.discovery) is the only endpoint source, as in llm-d, so
// no flag may give another; without one, a flag must.
func (f *Flags) checkConfigSource(discovery string) error {
	var flags []string
	for _, fl := range []struct{ name, value string }{{"--endpoints", f.Endpoints}, {"--endpoints-file", f.EndpointsFile},
		{"--pool-name", f.Kube.PoolName}, {"--endpoint-selector", f.Kube.EndpointSelector}, {"--endpoint-picker-service", f.Kube.PickerService}} {
		if fl.value != "" {
			flags = append(flags, fl.name)
		}
	}
	switch {
	case discovery == "" && len(flags) == 0:
		return errNoSource
	case discovery != "" && len(flags) > 0:
		return fmt.Errorf("%s conflicts with the config's dataLayer.discovery.pluginRef %q: a discovery plugin is the only endpoint source; "+
			"drop %s or the discovery plugin", strings.Join(flags, " and "), discovery, strings.Join(flags, " and "))
	}
	return nil
}

// portList is a repeatable flag of comma-separated port numbers.
type portList []int

func (p *portList) String() string {
	s := make([]string, len(*p))
	for i, v := range *p {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (p *portList) Set(v string) error {
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return fmt.Errorf("%q is not a port number", f)
		}
		*p = append(*p, n)
	}
	return nil
}

// kubeSource runs the controller-runtime manager: the reconcilers (on
// every replica) and, with HA, the leader election.
type kubeSource struct {
	cfg     *rest.Config // the API server, also checking /metrics callers
	mgr     manager.Manager
	ha      bool
	lookups *controller.PoolLookups

	mu       sync.Mutex
	cancel   context.CancelFunc
	released bool
}

// Start runs the manager until ctx ends or release is called.
func (k *kubeSource) Start(ctx context.Context) error {
	k.mu.Lock()
	if k.released {
		k.mu.Unlock()
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	k.cancel = cancel
	k.mu.Unlock()
	defer cancel()
	if err := k.mgr.Start(ctx); err != nil {
		return fmt.Errorf("kubernetes: %w", err)
	}
	return nil
}

// release stops the manager, which gives up the Lease at once so a standby
// takes over while this replica drains; the datastore keeps its last state.
func (k *kubeSource) release() {
	if k == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.released = true
	if k.cancel != nil {
		k.cancel()
	}
}

// leader reports whether this replica may serve: always without HA.
func (k *kubeSource) leader() bool {
	if k == nil || !k.ha {
		return true
	}
	select {
	case <-k.mgr.Elected():
		return true
	default:
		return false
	}
}

// globalLogs routes controller-runtime's and client-go's package-level
// loggers (leader election, reflectors) to the EPP's logger, once per
// process.
var globalLogs sync.Once

// addKube builds the manager and the reconcilers feeding the datastore.
func (a *app) addKube() error {
	k := &a.flags.Kube
	globalLogs.Do(func() {
		crlog.SetLogger(a.log.WithName("controller-runtime"))
		klog.SetLogger(a.log.WithName("client-go"))
	})
	cfg, err := restConfig(k.Kubeconfig)
	if err != nil {
		return err
	}
	ns := k.namespace(os.Getenv)
	opts := controller.Options{Namespace: ns, PoolGroup: k.PoolGroup,
		TargetPorts: k.EndpointTargetPorts, Store: a.store, Log: a.log.WithName("kubernetes")}
	if k.PoolName != "" {
		opts.PoolNames = k.poolNames()
	}
	opts.PickerService = k.PickerService
	if k.PickerService != "" {
		opts.OnServed = a.router.SetDeclared
	}
	if k.EndpointSelector != "" {
		if opts.Selector, err = labels.Parse(k.EndpointSelector); err != nil {
			return fmt.Errorf("--endpoint-selector: %w", err)
		}
	}
	if err := controller.Preflight(cfg, opts); err != nil {
		return err
	}
	peers := a.peerOptions(ns)
	if peers != nil {
		if err := controller.PreflightPeers(cfg, *peers); err != nil {
			return err
		}
	}
	mgr, err := newManager(cfg, k, ns, opts, peers, a.log)
	if err != nil {
		return err
	}
	lookups, err := controller.Setup(mgr, opts)
	if err != nil {
		return err
	}
	if peers != nil {
		if err := controller.SetupPeers(mgr, *peers); err != nil {
			return err
		}
	}
	a.kube = &kubeSource{cfg: cfg, mgr: mgr, ha: k.LeaderElection, lookups: lookups}
	a.background = append(a.background, a.kube)
	a.log.Info("kubernetes mode", "namespace", ns, "pool", k.PoolName, "pickerService", k.PickerService, "selector", k.EndpointSelector,
		"leaderElection", k.LeaderElection)
	return nil
}

// peerOptions is the watch of the replicas' EndpointSlices, nil without
// --replica-sync-service. The replica-sync node is built after the
// manager, before it starts, hence the late lookup of a.replicas.
func (a *app) peerOptions(ns string) *controller.PeerOptions {
	r := &a.flags.Replicas
	if !r.enabled() || r.Service == "" {
		return nil
	}
	return &controller.PeerOptions{Namespace: ns, Service: r.Service, PortName: r.PortName, Log: a.log.WithName("replica-peers"),
		OnChange: func(peers []string) {
			if a.replicas != nil {
				a.replicas.SetPeers(peers)
			}
		}}
}

func newManager(cfg *rest.Config, k *KubeFlags, ns string, opts controller.Options, peers *controller.PeerOptions, log logr.Logger) (manager.Manager, error) {
	scheme := runtime.NewScheme()
	if err := controller.AddToScheme(scheme); err != nil {
		return nil, err
	}
	cache := controller.CacheOptions(opts)
	if peers != nil {
		controller.AddPeerCache(&cache, *peers)
	}
	mgr, err := manager.New(cfg, manager.Options{
		Scheme: scheme,
		Cache:  cache,
		Logger: log.WithName("kubernetes"),
		// The EPP serves its own /metrics and health; the manager serves none.
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:        "0",
		LeaderElection:                k.LeaderElection,
		LeaderElectionID:              k.leaseName(ns),
		LeaderElectionNamespace:       ns,
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return nil, fmt.Errorf("kubernetes manager: %w", err)
	}
	return mgr, nil
}

// restConfig loads --kubeconfig, or else controller-runtime's usual chain
// ($KUBECONFIG, in-cluster, ~/.kube/config).
func restConfig(path string) (*rest.Config, error) {
	if path == "" {
		cfg, err := ctrlconfig.GetConfig()
		if err != nil {
			return nil, fmt.Errorf("kubernetes config: %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %q: %w", path, err)
	}
	cfg.QPS = -1 // as controller-runtime does: rely on API priority and fairness
	return cfg, nil
}

// kubeOptions wires the pools' objectives and rewrites into the server:
// with one pool as the server's own, with several per pool.
func (a *app) kubeOptions(o *server.Options) {
	if a.kube == nil || (a.flags.Kube.PoolName == "" && a.flags.Kube.PickerService == "") {
		return
	}
	if pools := a.flags.Kube.poolNames(); len(pools) == 1 {
		lookups := a.kube.lookups.Of(pools[0])
		o.Objectives = lookups.Objectives
		o.Rewrites = lookups.Rewrites
		return
	}
	lookups := a.kube.lookups
	o.PoolPolicies = func(pool string) (server.Objectives, server.Rewrites) {
		l := lookups.Of(pool)
		if l == nil {
			return nil, nil
		}
		return l.Objectives, l.Rewrites
	}
}
