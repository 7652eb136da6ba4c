package epp

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/metrics"
	"github.com/openepp/openepp/pkg/plugins"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
)

// loadConfig builds the scheduler and plugins from --config-file,
// --config-text or the upstream default, and prepares the reload watcher.
func (a *app) loadConfig(st *settings, reg prometheus.Registerer) (*config.Built, error) {
	src, cfg, registry, err := readConfig(a.flags, st)
	if err != nil {
		return nil, err
	}
	opts := config.BuildOptions{Registry: registry, Seed: a.flags.Seed, Timer: a.metrics, Handle: &scheduler.Handle{
		Log: a.log.WithName("plugins"), Clock: scheduler.RealClock{}, Endpoints: a.store.Snapshot,
		Registerer: replacingRegisterer{reg}, StalenessThreshold: a.flags.StalenessThreshold,
		UpstreamScoring: a.flags.UpstreamScoring,
	}, ModelLists: a.severalPools()}
	built, err := config.BuildWith(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	for _, w := range built.Warnings {
		a.log.Info("config warning", "warning", w)
	}
	cm, err := config.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	cm.SetActive(built.Hash, a.now())
	a.plugins = &pluginRunner{log: a.log}
	if src.File != "" {
		w, err := config.NewWatcher(config.WatcherOptions{Path: src.File, Build: opts, Current: built,
			OnReload: a.onReload, Metrics: cm, Log: a.log.WithName("config")})
		if err != nil {
			return nil, err
		}
		a.background = append(a.background, w)
	}
	a.log.Info("loaded config", "source", src.String(), "hash", built.Hash)
	return built, nil
}

// readConfig reads and parses the scheduler config the flags name
// (--config-file, --config-text, or the upstream default) and makes the
// plugin registry to build it with.
func readConfig(f *Flags, st *settings) (config.Source, *config.Config, *scheduler.Registry, error) {
	src, err := config.NewSource(f.ConfigFile, f.ConfigText)
	if err != nil {
		return src, nil, nil, err
	}
	registry, err := plugins.InTree(st.plugins...)
	if err != nil {
		return src, nil, nil, err
	}
	data := []byte(config.DefaultText)
	if src.File != "" || src.Text != "" {
		if data, err = src.Read(); err != nil {
			return src, nil, nil, err
		}
	}
	cfg, err := config.Load(data)
	if err != nil {
		return src, nil, nil, fmt.Errorf("%s: %w", src, err)
	}
	return src, cfg, registry, nil
}

// onReload switches new requests to the new scheduler; plugins that were
// reused keep running, replaced ones are stopped.
func (a *app) onReload(b *config.Built) {
	a.mu.Lock()
	defer a.mu.Unlock()
	prev := a.built
	a.built = b
	// The scheduler first: a request let through by the new admission must
	// be scheduled, and counted, by the new plugins.
	a.srv.SetScheduler(b.Scheduler)
	a.srv.SetUnparsed(unparsedAPIs(b))
	if a.flags.EnginePriority.Mode == enginePriorityAuto && b.Config.LLMDFlavor() != prev.Config.LLMDFlavor() {
		a.srv.SetEnginePriority(a.enginePriorityFor(b))
	}
	if adm, err := a.flow.configure(b); err != nil {
		a.log.Error(err, "flow control: keeping the previous settings")
	} else {
		a.srv.SetAdmission(adm)
	}
	a.attachReplicas(b)
	start, stop := b.Changes(prev)
	a.plugins.stop(stop)
	a.plugins.start(start)
	if len(config.Instances[metrics.Applier](b)) != len(config.Instances[metrics.Applier](prev)) {
		a.log.Info("data-layer changes in the config take effect at the next restart")
	}
	if err := discoveryChange(prev, b); err != nil {
		a.log.Error(err, "endpoint discovery: keeping the running endpoint source")
	}
}

// discoveryChange reports a reload that changes dataLayer.discovery: the
// plugin named, or its parameters (an unchanged instance is reused). The
// running source stays, as swapping the source of a live pool could empty
// it; the change takes effect at the next restart.
func discoveryChange(prev, next *config.Built) error {
	before, after := discoveryName(prev), discoveryName(next)
	switch {
	case before == after && (after == "" || next.Reused(after)):
		return nil
	case after == "":
		return fmt.Errorf("the new config names no dataLayer.discovery plugin (was %q); the source cannot change until a restart", before)
	case before == "":
		return fmt.Errorf("the new config names dataLayer.discovery plugin %q, but endpoints come from the flags; the source cannot change until a restart", after)
	case before == after:
		return fmt.Errorf("dataLayer.discovery plugin %q has new parameters; the source cannot change until a restart", after)
	}
	return fmt.Errorf("dataLayer.discovery now names %q instead of %q; the source cannot change until a restart", after, before)
}

func discoveryName(b *config.Built) string {
	if d := b.Discovery(); d != nil {
		return d.TypedName().Name
	}
	return ""
}

// scraperOptions applies the config's data-layer plugins over the flags.
func (a *app) scraperOptions(b *config.Built, reg prometheus.Registerer) metrics.Options {
	o := metrics.Options{
		Interval: a.flags.RefreshMetrics, Timeout: a.flags.MetricsTimeout,
		StalenessThreshold: a.flags.StalenessThreshold, Log: a.log, Registerer: reg, PoolNames: a.pools,
		AlignedSlots: a.flags.ScrapeSlots, MaxScrapesPerSecond: a.flags.MaxScrapes, FullPages: a.flags.FullMetricsPages,
	}
	a.flags.compat.applyScrape(&o)
	for _, ap := range config.Instances[metrics.Applier](b) {
		ap.ApplyTo(&o)
	}
	return o
}

// pluginRunner runs plugins' background work and stops it individually
// when a reload replaces the plugin.
type pluginRunner struct {
	log     logr.Logger
	mu      sync.Mutex
	ctx     context.Context
	wg      sync.WaitGroup
	cancels map[string]context.CancelFunc
}

// begin starts the initial plugins; later starts and stops come from
// reloads. Everything stops when ctx ends.
func (p *pluginRunner) begin(ctx context.Context, initial []config.NamedRunnable) {
	p.mu.Lock()
	p.ctx, p.cancels = ctx, map[string]context.CancelFunc{}
	p.mu.Unlock()
	p.start(initial)
}

// wait blocks until the context given to begin ends and every plugin's
// background work has returned.
func (p *pluginRunner) wait() {
	<-p.ctx.Done()
	p.wg.Wait()
}

func (p *pluginRunner) start(rs []config.NamedRunnable) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx == nil {
		return
	}
	for _, r := range rs {
		ctx, cancel := context.WithCancel(p.ctx)
		p.cancels[r.Name] = cancel
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if err := r.Runnable.Start(ctx); err != nil && !errors.Is(err, context.Canceled) {
				p.log.Error(err, "plugin background work failed", "plugin", r.Name)
			}
		}()
	}
}

func (p *pluginRunner) stop(rs []config.NamedRunnable) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range rs {
		if cancel := p.cancels[r.Name]; cancel != nil {
			cancel()
			delete(p.cancels, r.Name)
		}
	}
}

// replacingRegisterer lets a rebuilt plugin register collectors its
// predecessor registered: the old ones are replaced instead of failing the
// reload.
type replacingRegisterer struct{ prometheus.Registerer }

func (r replacingRegisterer) Register(c prometheus.Collector) error {
	err := r.Registerer.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		r.Registerer.Unregister(are.ExistingCollector)
		return r.Registerer.Register(c)
	}
	return err
}

func (r replacingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// unparsedAPIs returns the API families no configured parser covers; a
// config without parsers (none after defaulting) parses every family.
func unparsedAPIs(b *config.Built) request.APISet {
	parsers := config.Instances[*plugins.Parser](b)
	if len(parsers) == 0 {
		return 0
	}
	covered := request.APISet(0)
	for _, p := range parsers {
		covered |= p.Covers()
	}
	return request.AllAPIs &^ covered
}
