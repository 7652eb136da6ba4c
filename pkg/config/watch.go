package config

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/filewatch"
)

// Metrics are the configuration's own collectors.
type Metrics struct {
	reloads     *prometheus.CounterVec
	lastSuccess prometheus.Gauge
	lastFailed  prometheus.Gauge
	info        *prometheus.GaugeVec

	mu   sync.Mutex
	hash string
}

// NewMetrics registers the config collectors on reg:
// openepp_config_reloads_total{result="success|failure"},
// openepp_config_last_reload_success_timestamp_seconds,
// openepp_config_last_reload_failed (1 while the file on disk is one the
// EPP refused) and openepp_config_info{hash} (1 for the active
// configuration).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "openepp_config_reloads_total",
			Help: "Configuration reloads by result (success or failure).",
		}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "openepp_config_last_reload_success_timestamp_seconds",
			Help: "When the active configuration was loaded, in Unix seconds.",
		}),
		lastFailed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "openepp_config_last_reload_failed",
			Help: "1 while the latest configuration reload failed (the file on disk is not the one running), else 0.",
		}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "openepp_config_info",
			Help: "The active configuration, identified by its content hash.",
		}, []string{"hash"}),
	}
	for _, c := range []prometheus.Collector{m.reloads, m.lastSuccess, m.lastFailed, m.info} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register config metrics: %w", err)
		}
	}
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	return m, nil
}

// SetActive records that the configuration with hash is now in use (call it
// for the initial configuration; the Watcher calls it on reloads).
func (m *Metrics) SetActive(hash string, now time.Time) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hash != "" && m.hash != hash {
		m.info.DeleteLabelValues(m.hash)
	}
	m.hash = hash
	m.info.WithLabelValues(hash).Set(1)
	m.lastSuccess.Set(float64(now.UnixNano()) / 1e9)
}

func (m *Metrics) reloaded(ok bool) {
	if m == nil {
		return
	}
	result, failed := "success", 0.0
	if !ok {
		result, failed = "failure", 1
	}
	m.reloads.WithLabelValues(result).Inc()
	m.lastFailed.Set(failed)
}

// WatcherOptions configures a Watcher.
type WatcherOptions struct {
	// Path is the --config-file path.
	Path string
	// Build carries the registry, handle and seed for rebuilding; its
	// Previous is ignored (the running build is used).
	Build BuildOptions
	// Current is the running build, made from Path at startup.
	Current *Built
	// OnReload receives each new build, in order, from the watcher's
	// goroutine. It must not call Reload.
	OnReload func(*Built)
	// Metrics may be nil.
	Metrics *Metrics
	Log     logr.Logger
	// Debounce is how long the directory must stay quiet before a reload;
	// default 250ms (editors and ConfigMap updates emit bursts of events).
	Debounce time.Duration
}

// Watcher reloads the configuration file when it changes. A new file that
// fails to load or build leaves the running configuration in place; the
// failure is logged as one line listing every problem and counted. A file
// whose content hash is unchanged is not rebuilt and not counted.
type Watcher struct {
	opts   WatcherOptions
	mu     sync.Mutex // serialises reloads
	active atomic.Pointer[Built]
}

// NewWatcher checks opts; it starts nothing (see Start).
func NewWatcher(opts WatcherOptions) (*Watcher, error) {
	switch {
	case opts.Path == "":
		return nil, errors.New("config watcher: path is required")
	case opts.Current == nil:
		return nil, errors.New("config watcher: the current build is required")
	case opts.OnReload == nil:
		return nil, errors.New("config watcher: OnReload is required")
	case opts.Build.Registry == nil:
		return nil, errors.New("config watcher: registry is required")
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 250 * time.Millisecond
	}
	w := &Watcher{opts: opts}
	w.active.Store(opts.Current)
	return w, nil
}

// Active returns the build in use.
func (w *Watcher) Active() *Built { return w.active.Load() }

// Start watches the file (pkg/filewatch: its directory, so that ConfigMap
// updates and editors' renames are seen) and reloads after each quiet
// period. It blocks until ctx is done.
func (w *Watcher) Start(ctx context.Context) error {
	fw, err := filewatch.New(w.opts.Path)
	if err != nil {
		return fmt.Errorf("config watcher: %w", err)
	}
	defer fw.Close()
	// The file may have changed between the first load and the watch: look
	// once now that changes are seen (an unchanged hash costs a read).
	w.reloadAndLog()
	return fw.Run(ctx, w.opts.Debounce, w.reloadAndLog, func(err error) {
		w.opts.Log.Error(err, "config watch error", "path", w.opts.Path)
	})
}

func (w *Watcher) reloadAndLog() {
	b, err := w.reload()
	switch {
	case err != nil:
		w.opts.Log.Error(err, "config reload failed, keeping the running config", "path", w.opts.Path)
	case b != nil:
		w.opts.Log.Info("config reloaded", "path", w.opts.Path, "hash", b.Hash, "warnings", b.Warnings)
	default:
		w.opts.Log.V(1).Info("config file touched, content unchanged", "path", w.opts.Path)
	}
}

// Reload reads the file now (for tests, or a SIGHUP handler). It returns
// the problems of a bad file; the running configuration stays in place.
func (w *Watcher) Reload() error {
	_, err := w.reload()
	return err
}

// reload returns the new build, or nil when the content is unchanged.
func (w *Watcher) reload() (*Built, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	b, err := w.load()
	if err != nil {
		w.opts.Metrics.reloaded(false)
		return nil, err
	}
	if b == nil {
		return nil, nil
	}
	if rebuilt, kept := b.Rebuilt(w.active.Load()); len(rebuilt) > 0 {
		// Say which plugins lost their state (a cold prefix index, say) and
		// which kept it, so a routing change after a reload is explained.
		w.opts.Log.Info("config reload rebuilds plugins", "rebuilt", rebuilt, "keptState", kept)
	}
	w.active.Store(b)
	w.opts.Metrics.reloaded(true)
	w.opts.Metrics.SetActive(b.Hash, time.Now())
	w.opts.OnReload(b)
	return b, nil
}

func (w *Watcher) load() (*Built, error) {
	data, err := os.ReadFile(w.opts.Path)
	if err != nil {
		return nil, fmt.Errorf("read config file: %w", err)
	}
	cfg, err := Load(data)
	if err != nil {
		return nil, err
	}
	prev := w.active.Load()
	if hashOf(cfg) == prev.Hash {
		return nil, nil
	}
	opts := w.opts.Build
	opts.Previous = prev
	return BuildWith(cfg, opts)
}
