package epp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/datastore"
	"github.com/openepp/openepp/pkg/discovery"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/metrics"
	"github.com/openepp/openepp/pkg/poolroute"
	"github.com/openepp/openepp/pkg/replicasync"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/server"
	"github.com/openepp/openepp/pkg/tracing"
)

// runnable is background work that blocks until its context ends.
type runnable interface {
	Start(ctx context.Context) error
}

// app is one assembled EPP.
type app struct {
	flags    *Flags
	log      logr.Logger
	store    *datastore.Store
	srv      *server.Server
	draining atomic.Bool
	warmup   metricsWarmup
	// policyFiles are the policy files loaded (/debug/policies).
	policyFiles []loadedPolicyFile
	mu          sync.Mutex // guards built across config reloads
	built       *config.Built
	plugins     *pluginRunner
	flow        *flowControl
	kube        *kubeSource // nil unless Kubernetes mode
	// pools are the pools the EPP is told it serves at start: --pool-name's
	// list or the endpoints file's pools.
	pools    []string
	router   *poolroute.Router // which pool a request is for
	replicas *replicasync.Node // nil unless --replica-sync-port
	// metrics are the request path's collectors, also timing every plugin.
	metrics *server.Metrics
	// scrape names each endpoint's engine for engine priority on reloads.
	scrape metrics.Options

	background []runnable
	grpc       *grpc.Server
	health     *grpc.Server
	metricsSrv *http.Server
	tracing    *tracing.Tracing // nil with --tracing=false
	lis        struct{ grpc, health, metrics net.Listener }
	addrs      Addrs
}

// registry is where the EPP registers its collectors and gathers its
// metrics page from (a *prometheus.Registry).
type registry interface {
	prometheus.Registerer
	prometheus.Gatherer
}

func build(f *Flags, st *settings, log logr.Logger, reg registry) (*app, error) {
	a := &app{flags: f, log: log, store: datastore.New(), metrics: server.NewMetrics(reg), pools: f.declaredPools()}
	// Before the sources: a picker service's pools are told to it.
	a.router = poolroute.New(a.pools, f.PoolHeader)
	built, err := a.loadConfig(st, reg)
	if err != nil {
		return nil, err
	}
	a.built = built
	// After the config: it may name the endpoint source.
	if err := a.addSources(built.Discovery(), reg); err != nil {
		return nil, err
	}
	scrape := a.scraperOptions(built, reg)
	scraper, err := metrics.New(a.store, scrape)
	if err != nil {
		return nil, fmt.Errorf("metrics scraper: %w", err)
	}
	a.background = append(a.background, scraper, seriesPruner{a.store, a.metrics})
	opts := server.Options{
		MaxRequestBodyBytes: f.MaxRequestBodyBytes, DisableSubsetFilter: f.DisableSubsetFilter,
		EmitEndpointScores: f.EmitEndpointScores,
		IncludeStreamUsage: f.IncludeStreamUsage, Unparsed: unparsedAPIs(built), Log: log.WithName("server"), Metrics: a.metrics,
	}
	a.scrape = scrape
	a.poolRouter(&opts)
	opts.EnginePriority = a.enginePriorityFor(built)
	if f.compat.grpcStreamMetrics {
		opts.Streams = server.NewStreamMetrics(reg)
	}
	evictions, err := newEvictionSeries(reg)
	if err != nil {
		return nil, fmt.Errorf("eviction metrics: %w", err)
	}
	a.flow, err = newFlowControl(a.store, newFlowMetrics(reg, a.poolLabel()), evictions, f.RefreshMetrics, f.StalenessThreshold,
		a.poolLabel(), a.pools, a.severalPools(), opts.Pools.Members)
	if err != nil {
		return nil, err
	}
	if err := a.flow.registerCapacity(reg); err != nil {
		return nil, fmt.Errorf("flow-control metrics: %w", err)
	}
	if err := reg.Register(leaderGauge(a.kube)); err != nil {
		return nil, fmt.Errorf("leader metric: %w", err)
	}
	if opts.Admission, err = a.flow.configure(built); err != nil {
		return nil, err
	}
	a.background = append(a.background, a.flow)
	a.kubeOptions(&opts)
	if err := a.loadPolicyFiles(&opts, reg); err != nil {
		return nil, err
	}
	if err := a.startTracing(st, &opts); err != nil {
		return nil, err
	}
	a.srv = server.New(a.store, built.Scheduler, opts)
	if err := a.buildServers(reg); err != nil {
		a.stopTracing()
		return nil, err
	}
	if err := a.addReplicaSync(st, reg); err != nil {
		a.closeListeners()
		a.stopTracing()
		return nil, err
	}
	return a, nil
}

// addSources adds the endpoint source: the config's discovery plugin d
// (nil if none) or the one the flags name.
func (a *app) addSources(d scheduler.Discovery, reg prometheus.Registerer) error {
	name := ""
	if d != nil {
		name = d.TypedName().Name
	}
	if err := a.flags.checkConfigSource(name); err != nil {
		return err
	}
	if d != nil {
		a.background = append(a.background, discoverySource{d: d, store: a.store})
		a.log.Info("endpoints from the config's discovery plugin", "plugin", d.TypedName().String())
		return nil
	}
	if a.flags.Kube.enabled() {
		return a.addKube()
	}
	if a.flags.Endpoints != "" {
		specs, err := discovery.ParseList(a.flags.Endpoints)
		if err != nil {
			return fmt.Errorf("--endpoints: %w", err)
		}
		a.background = append(a.background, discovery.NewStatic(a.store, specs))
	}
	if a.flags.EndpointsFile != "" {
		if _, err := discovery.LoadFile(a.flags.EndpointsFile); err != nil {
			return fmt.Errorf("--endpoints-file: %w", err)
		}
		a.background = append(a.background, discovery.NewFile(a.flags.EndpointsFile, a.store, a.log.WithName("discovery"), reg))
	}
	return nil
}

// discoverySource runs the config's discovery plugin as the endpoint
// source, under the plugin's name in the datastore.
type discoverySource struct {
	d     scheduler.Discovery
	store *datastore.Store
}

func (s discoverySource) Start(ctx context.Context) error {
	name := s.d.TypedName().Name
	err := s.d.Discover(ctx, func(specs []endpoint.Spec) { s.store.Replace(name, specs) })
	if err != nil {
		return fmt.Errorf("dataLayer.discovery plugin %q: %w", name, err)
	}
	return nil
}

func (a *app) now() time.Time { return time.Now() }

// leaderGauge is openepp_ha_leader: which replica of an active-passive pair
// serves (controller-runtime's own leader gauge is on a registry the EPP
// does not serve).
func leaderGauge(k *kubeSource) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "openepp_ha_leader",
		Help: "1 while this replica holds the leader Lease, or runs without leader election; 0 on a standby."},
		func() float64 {
			if k.leader() {
				return 1
			}
			return 0
		})
}

// ready is the readiness verdict behind every health service but liveness:
// endpoints synced and scraped once (metricsWarmup), Lease held (when HA is
// on), not draining.
func (a *app) ready() bool {
	return a.store.Ready() && a.warmup.done(a.now(), a.store.Snapshot(), a.flags.StalenessThreshold) &&
		a.kube.leader() && !a.draining.Load()
}

func (a *app) buildServers(reg registry) error {
	f := a.flags
	health := &server.Health{Ready: a.ready}
	opts := server.GRPCOptions{MaxRecvMsgSize: f.recvLimit(), MaxSendMsgSize: f.sendLimit()}
	if f.SecureServing {
		cfg, err := server.TLSConfig(f.CertPath, f.EnableCertReload, a.log.WithValues("use", "ext_proc server certificate"))
		if err != nil {
			return err
		}
		f.TLS.apply(cfg)
		opts.TLS = cfg
	}
	if f.HealthChecking {
		opts.Health = health
	}
	a.grpc = a.srv.NewGRPCServer(opts)
	a.health = server.NewHealthServer(health)
	var err error
	if a.lis.grpc, err = listen(f.BindAddress, f.GRPCPort); err != nil {
		return fmt.Errorf("ext_proc %w", err)
	}
	a.addrs.GRPC = a.lis.grpc.Addr().String()
	if a.lis.health, err = listen(f.BindAddress, f.GRPCHealthPort); err != nil {
		a.lis.grpc.Close()
		return fmt.Errorf("health %w", err)
	}
	a.addrs.Health = a.lis.health.Addr().String()
	if f.MetricsPort >= 0 {
		if a.metricsSrv, err = a.newMetricsServer(reg); err == nil {
			if a.lis.metrics, err = listen(f.BindAddress, f.MetricsPort); err != nil {
				err = fmt.Errorf("metrics %w", err)
			}
		}
		if err != nil {
			a.lis.grpc.Close()
			a.lis.health.Close()
			return err
		}
		a.addrs.Metrics = a.lis.metrics.Addr().String()
	}
	return nil
}

// closeListeners undoes buildServers when the EPP fails to build after it.
func (a *app) closeListeners() {
	for _, l := range []net.Listener{a.lis.grpc, a.lis.health, a.lis.metrics} {
		if l != nil {
			l.Close()
		}
	}
}

// newMetricsServer is the HTTP server of /metrics and pprof: plain, or TLS
// with --metrics-cert-dir.
func (a *app) newMetricsServer(reg registry) (*http.Server, error) {
	h, err := a.metricsHandler(reg)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := a.flags.TLS.metricsTLS(a.log)
	if err != nil {
		return nil, err
	}
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsCfg}, nil
}

// metricsHandler serves /metrics (and pprof), behind the API server's
// authentication in Kubernetes mode unless --metrics-endpoint-auth=false.
// Without Kubernetes there is nothing to check tokens against: the page is
// open, as it is for local runs.
func (a *app) metricsHandler(reg registry) (http.Handler, error) {
	mux := metricsMux(reg, a.flags.EnablePprof)
	for path, h := range a.debugHandlers() {
		mux.Handle(path, h)
	}
	switch {
	case !a.flags.compat.metricsAuth:
		return mux, nil
	case a.kube == nil:
		if a.flags.compat.set["metrics-endpoint-auth"] {
			a.log.Info("no Kubernetes API server to check tokens with: /metrics is served without authentication")
		}
		return mux, nil
	}
	return newMetricsGuard(mux, a.kube.cfg, a.log.WithName("metrics-auth"))
}

func metricsMux(reg registry, withPprof bool) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(metricsPage(reg), promhttp.HandlerOpts{Registry: reg}))
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// seriesPruner drops the request metrics' series of endpoints that left
// the pool, each time the pool changes (see server.Metrics.PruneEndpoints).
type seriesPruner struct {
	store   *datastore.Store
	metrics *server.Metrics
}

func (p seriesPruner) Start(ctx context.Context) error {
	for {
		changed := p.store.Changed() // taken before the snapshot, so no change is missed
		p.metrics.PruneEndpoints(p.store.Snapshot())
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

// run serves until ctx ends (or a component fails), then drains: readiness
// turns NOT_SERVING so proxies move away, in-flight streams get up to
// --drain-timeout to finish, and everything stops.
func (a *app) run(ctx context.Context) error {
	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	var wg sync.WaitGroup
	// Room for every goroutine's result so none blocks after the first.
	errc := make(chan error, len(a.background)+4)
	goRun := func(fn func() error) {
		wg.Add(1)
		go func() { defer wg.Done(); errc <- fn() }()
	}
	a.plugins.begin(bg, a.built.Runnables) // before the config watcher can reload
	for _, r := range a.background {
		goRun(func() error { return r.Start(bg) })
	}
	goRun(func() error { a.plugins.wait(); return nil })
	goRun(func() error { return server.Serve(bg, a.grpc, a.lis.grpc, a.flags.DrainTimeout) })
	goRun(func() error { return server.Serve(bg, a.health, a.lis.health, time.Second) })
	if a.metricsSrv != nil {
		goRun(a.serveMetrics)
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	a.drain()
	stopBG()
	if a.metricsSrv != nil {
		_ = a.metricsSrv.Close()
	}
	wg.Wait()
	a.stopTracing()
	return err
}

// startTracing sets up request tracing unless --tracing=false.
func (a *app) startTracing(st *settings, opts *server.Options) error {
	if !a.flags.Tracing {
		return nil
	}
	t, err := tracing.Start(context.Background(), tracing.Options{Getenv: st.getenv, Version: moduleVersion(), Log: a.log.WithName("tracing")})
	if err != nil {
		return fmt.Errorf("tracing (--tracing=false turns it off): %w", err)
	}
	a.tracing = t
	opts.Tracer, opts.Propagator = t.Tracer, t.Propagator
	a.log.Info("tracing requests", t.Describe...)
	return nil
}

// stopTracing exports the spans still buffered, giving a collector that
// is down a few seconds at most.
func (a *app) stopTracing() {
	if a.tracing == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := a.tracing.Shutdown(ctx); err != nil {
		a.log.Error(err, "flushing traces")
	}
}

func (a *app) serveMetrics() error {
	var err error
	if a.metricsSrv.TLSConfig != nil {
		err = a.metricsSrv.ServeTLS(a.lis.metrics, "", "") // the certificate comes from TLSConfig
	} else {
		err = a.metricsSrv.Serve(a.lis.metrics)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// drain waits for in-flight streams to end, at most --drain-timeout.
func (a *app) drain() {
	a.draining.Store(true)
	a.kube.release() // hand the Lease over now; serve in-flight streams meanwhile
	deadline := time.Now().Add(a.flags.DrainTimeout)
	if n := a.srv.InFlight(); n > 0 {
		a.log.Info("draining in-flight requests", "requests", n, "timeout", a.flags.DrainTimeout)
	}
	for a.srv.InFlight() > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
}
