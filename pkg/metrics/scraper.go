package metrics

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/datastore"
	"github.com/openepp/openepp/pkg/endpoint"
)

// Defaults, matching upstream's flags and data-source parameters.
const (
	DefaultInterval           = 50 * time.Millisecond // --refresh-metrics-interval
	DefaultTimeout            = time.Second           // per-scrape collection timeout
	DefaultStalenessThreshold = 2 * time.Second       // --metrics-staleness-threshold
	DefaultScheme             = "http"
	DefaultPath               = "/metrics"
	DefaultMaxPageBytes       = 16 << 20
	// DefaultMaxScrapesPerSecond is 200 endpoints at 50 ms; at the measured
	// ~50-100 µs per scrape it keeps scraping near a third of a core.
	DefaultMaxScrapesPerSecond = 4000
	// EndpointsPerWave is how many endpoints share a scrape instant when
	// Options.AlignedSlots is 0.
	EndpointsPerWave = 25
)

// maxPooledPage keeps one huge page from pinning its buffer in the pool.
const maxPooledPage = 4 << 20

// Clock tells the time; tests inject a fake one to drive staleness.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Options configures a Scraper. The zero value of every field means its
// default.
type Options struct {
	// Interval between two scrapes of one endpoint (default 50ms).
	Interval time.Duration
	// MaxScrapesPerSecond caps the scrape rate of the whole pool (default
	// DefaultMaxScrapesPerSecond; -1: no cap). With more endpoints than
	// Interval allows at this rate, every endpoint is scraped less often
	// rather than request handling being starved of CPU: 1,000 endpoints at
	// 50 ms would be 20,000 scrapes/s, more than a core.
	MaxScrapesPerSecond int
	// Timeout bounds one scrape, connection included (default 1s). It must
	// be below StalenessThreshold so a hanging server is marked stale in time.
	Timeout time.Duration
	// StalenessThreshold: an endpoint whose last successful scrape is older
	// (or that was never scraped) is marked stale (default 2s).
	StalenessThreshold time.Duration
	// Scheme is "http" (default) or "https".
	Scheme string
	// Path of the metrics page (default "/metrics"); an engine's MetricsPath
	// takes precedence for endpoints of that engine.
	Path string
	// InsecureSkipVerify skips TLS certificate checks with https; nil means
	// true, upstream's default (model servers rarely have real certificates),
	// unless CACertFile is set.
	InsecureSkipVerify *bool
	// CACertFile is a PEM bundle that https servers' certificates are
	// verified against (default: the system's roots, when verifying).
	CACertFile string
	// ClientCertFile and ClientKeyFile are a PEM key pair presented to
	// servers that ask for one (mTLS); they are reread when the files
	// change, for the next connection.
	ClientCertFile, ClientKeyFile string
	// Port, if set, is every endpoint's metrics port, instead of each
	// endpoint's own.
	Port int
	// Engines are added to, or replace by name, the built-in engines.
	Engines []EngineConfig
	// DefaultEngine serves endpoints without an engine-type label, or with
	// an unknown one (default "vllm").
	DefaultEngine string
	// EngineLabelKey, if set, is consulted before the standard engine-type
	// labels (EngineLabelGIE, then EngineLabelLLMD).
	EngineLabelKey string
	// PoolNames are the pools the EPP serves: upstream's inference_pool_*
	// gauges have a series (label name) for each, and for every pool an
	// endpoint names.
	PoolNames []string
	// AlignedSlots trades smoothness for CPU by sharing scrape instants:
	// waking the runtime is a large part of a scrape's cost, so one wave
	// goroutine serving many scrapes is cheaper, but each shared instant is
	// a burst of scraping that can delay request handling. n > 0 aligns
	// every endpoint to one of n instants per interval; -1 gives each
	// endpoint its own instant and goroutine (steady, most CPU); 0 (default)
	// picks ceil(endpoints/EndpointsPerWave) instants and follows the pool
	// as it grows or shrinks, so bursts stay small (about a millisecond of
	// CPU) while wake-ups drop 25-fold. At 100 endpoints and 50 ms the
	// default measured ~0.08 cores idle here, -1 about three times that.
	AlignedSlots int
	// FullPages turns off asking servers for only the metric families the
	// engine reads (a name[] query, checked against a whole page and
	// dropped for a server that does not honour it; see narrow.go).
	// Paths that carry a query of their own are always fetched as they are.
	FullPages bool
	// MaxPageBytes bounds a metrics page (default 16 MiB).
	MaxPageBytes int64
	Log          logr.Logger
	// Registerer receives the scraper's own metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Clock stamps UpdateTime and judges staleness (default: real time).
	// Scrape ticks always follow real time.
	Clock Clock
}

func (o Options) withDefaults() (Options, error) {
	o.Interval = cmp.Or(o.Interval, DefaultInterval)
	o.MaxScrapesPerSecond = cmp.Or(o.MaxScrapesPerSecond, DefaultMaxScrapesPerSecond)
	o.Timeout = cmp.Or(o.Timeout, DefaultTimeout)
	o.StalenessThreshold = cmp.Or(o.StalenessThreshold, DefaultStalenessThreshold)
	if o.Scheme == "" {
		o.Scheme = DefaultScheme
	}
	if o.Path == "" {
		o.Path = DefaultPath
	}
	if o.InsecureSkipVerify == nil {
		skip := o.CACertFile == ""
		o.InsecureSkipVerify = &skip
	}
	if o.DefaultEngine == "" {
		o.DefaultEngine = EngineVLLM
	}
	if o.MaxPageBytes == 0 {
		o.MaxPageBytes = DefaultMaxPageBytes
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	return o, o.validate()
}

func (o Options) validate() error {
	var errs []error
	if o.Interval < 0 || o.Timeout < 0 || o.StalenessThreshold < 0 || o.MaxPageBytes < 0 || o.AlignedSlots < -1 || o.MaxScrapesPerSecond < -1 {
		errs = append(errs, errors.New("durations and sizes must not be negative"))
	}
	if o.Timeout >= o.StalenessThreshold {
		errs = append(errs, fmt.Errorf("timeout %v must be below the staleness threshold %v", o.Timeout, o.StalenessThreshold))
	}
	if o.Scheme != "http" && o.Scheme != "https" {
		errs = append(errs, fmt.Errorf("scheme %q: must be http or https", o.Scheme))
	}
	if o.Path[0] != '/' {
		errs = append(errs, fmt.Errorf("path %q: must start with '/'", o.Path))
	}
	if o.Scheme != "https" && (o.CACertFile != "" || o.ClientCertFile != "") {
		errs = append(errs, errors.New("a CA or client certificate needs scheme https"))
	}
	if (o.ClientCertFile == "") != (o.ClientKeyFile == "") {
		errs = append(errs, errors.New("client certificate and key: set both or neither"))
	}
	if o.Port < 0 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d: must be 1-65535", o.Port))
	}
	return errors.Join(errs...)
}

// Scraper keeps every endpoint of a datastore.Store supplied with fresh
// model-server metrics. It is a controller-runtime Runnable: New does no
// background work; Start runs until its context ends.
type Scraper struct {
	store     *datastore.Store
	opts      Options
	engines   *engineSet
	tlsConfig *tls.Config
	tel       *telemetry
	log       logr.Logger
	pages     sync.Pool // *bytes.Buffer holding raw pages

	// effInterval is Interval, lengthened when MaxScrapesPerSecond would
	// otherwise be exceeded; targets read it before every wait.
	effInterval atomic.Int64
	// autoSlots is the number of scrape instants chosen for the pool's
	// size when Options.AlignedSlots is 0 (see slots).
	autoSlots atomic.Int64

	started atomic.Bool
	// loops counts targets and waves still running; Start waits for them.
	loops  sync.WaitGroup
	active atomic.Int64 // endpoints still being scraped, for tests and shutdown checks
	// waveEndpoints is how many endpoints the waves hold.
	waveEndpoints atomic.Int64
	// narrowEndpoints is how many targets fetch narrow pages (narrowOn).
	narrowEndpoints atomic.Int64
	// runCtx is Start's context, the lifetime of the waves.
	runCtx  context.Context
	wavesMu sync.Mutex
	waves   map[slot]*wave
	// unknownSeen is touched only by the Start goroutine.
	unknownSeen map[string]bool
}

// New validates opts and builds a Scraper over store. It reports every
// configuration problem at once.
func New(store *datastore.Store, opts Options) (*Scraper, error) {
	if store == nil {
		return nil, errors.New("metrics scraper: nil store")
	}
	opts, err := opts.withDefaults()
	engines, eerr := buildEngines(opts.Engines, opts.DefaultEngine, opts.EngineLabelKey)
	if err = errors.Join(err, eerr); err != nil {
		return nil, fmt.Errorf("metrics scraper options: %w", err)
	}
	log := opts.Log.WithName("metrics")
	tlsConfig, err := clientTLS(opts, log)
	if err != nil {
		return nil, fmt.Errorf("metrics scraper options: %w", err)
	}
	s := &Scraper{
		store:       store,
		opts:        opts,
		engines:     engines,
		tlsConfig:   tlsConfig,
		log:         log,
		unknownSeen: map[string]bool{},
	}
	s.pages.New = func() any { return new(bytes.Buffer) }
	if s.tel, err = newTelemetry(opts.Registerer, store, opts.PoolNames, &s.waveEndpoints, &s.narrowEndpoints); err != nil {
		return nil, err
	}
	return s, nil
}

// Start scrapes until ctx is done, following store membership: a new
// endpoint gets its own loop at once, a removed one has its loop (and any
// request in flight) cancelled. It returns nil after every loop has exited.
func (s *Scraper) Start(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("metrics scraper: already started")
	}
	s.log.Info("metrics scraper started", "interval", s.opts.Interval, "timeout", s.opts.Timeout,
		"stalenessThreshold", s.opts.StalenessThreshold, "defaultEngine", s.opts.DefaultEngine)
	s.runCtx = ctx
	running := map[*endpoint.Endpoint]context.CancelFunc{}
	defer func() {
		for _, cancel := range running {
			cancel()
		}
		s.loops.Wait()
		s.log.Info("metrics scraper stopped")
	}()
	for {
		changed := s.store.Changed() // taken before the snapshot, so no change is missed
		s.reconcile(ctx, running)
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

func (s *Scraper) reconcile(ctx context.Context, running map[*endpoint.Endpoint]context.CancelFunc) {
	snap := s.store.Snapshot()
	s.setInterval(len(snap))
	s.setSlots(len(snap))
	present := make(map[*endpoint.Endpoint]bool, len(snap))
	for _, ep := range snap {
		present[ep] = true
		if running[ep] != nil {
			continue
		}
		t := s.newTarget(ep)
		var cancel context.CancelFunc
		t.ctx, cancel = context.WithCancel(ctx)
		running[ep] = cancel
		s.loops.Add(1) // released by t.release
		s.active.Add(1)
		go t.run()
	}
	for ep, cancel := range running {
		if !present[ep] {
			cancel()
			delete(running, ep)
		}
	}
}

// interval is the current scrape interval of every endpoint.
func (s *Scraper) interval() time.Duration {
	if iv := s.effInterval.Load(); iv > 0 {
		return time.Duration(iv)
	}
	return s.opts.Interval
}

// setInterval lengthens the interval when n endpoints at Interval would
// exceed MaxScrapesPerSecond, and says so when it changes.
func (s *Scraper) setInterval(n int) {
	iv := s.opts.Interval
	if limit := s.opts.MaxScrapesPerSecond; limit > 0 && n > 0 {
		iv = max(iv, time.Duration(int64(n)*int64(time.Second)/int64(limit)))
	}
	if old := time.Duration(s.effInterval.Swap(int64(iv))); old != iv && (old != 0 || iv != s.opts.Interval) {
		s.log.Info("metrics scrape interval adjusted to the pool size", "endpoints", n, "interval", iv,
			"maxScrapesPerSecond", s.opts.MaxScrapesPerSecond)
	}
}

// slots is how many shared scrape instants the interval has now; -1 gives
// every endpoint its own (see Options.AlignedSlots).
func (s *Scraper) slots() int {
	if s.opts.AlignedSlots != 0 {
		return s.opts.AlignedSlots
	}
	return max(1, int(s.autoSlots.Load()))
}

// slotShrinkMargin is how far below a multiple of EndpointsPerWave the
// pool must shrink before the waves are merged, so a pool that wavers
// around the boundary does not regroup its waves on every change.
const slotShrinkMargin = EndpointsPerWave / 5

// setSlots picks the automatic slot count for a pool of n endpoints:
// enough instants for waves of at most EndpointsPerWave, fewer only once
// the pool is slotShrinkMargin below the boundary. Waves of the old count
// disband at their next instant and their members join the new ones
// (wave.outdated), so a pool whose pods arrive one at a time, as from
// Kubernetes, ends with the same even waves as one listed at once.
func (s *Scraper) setSlots(n int) {
	if s.opts.AlignedSlots != 0 {
		return
	}
	cur := int(s.autoSlots.Load())
	want := max(1, (n+EndpointsPerWave-1)/EndpointsPerWave)
	if want < cur && (n+slotShrinkMargin+EndpointsPerWave-1)/EndpointsPerWave >= cur {
		return
	}
	if want != cur {
		s.autoSlots.Store(int64(want))
		s.log.V(1).Info("metrics scrape instants regrouped for the pool size", "endpoints", n, "instants", want)
	}
}

func (s *Scraper) newTarget(ep *endpoint.Endpoint) *target {
	eng, unknown := s.engines.resolve(ep.Labels)
	if unknown != "" {
		s.reportUnknownEngine(unknown, ep)
	}
	path := eng.path
	if path == "" {
		path = s.opts.Path
	}
	hostPort := ep.MetricsHostPort
	if s.opts.Port != 0 {
		if host, _, err := net.SplitHostPort(hostPort); err == nil {
			hostPort = net.JoinHostPort(host, strconv.Itoa(s.opts.Port))
		}
	}
	return newTarget(s, ep, eng, s.opts.Scheme+"://"+hostPort+path)
}

// reportUnknownEngine counts every endpoint with an unknown engine name and
// logs each name once.
func (s *Scraper) reportUnknownEngine(name string, ep *endpoint.Endpoint) {
	s.tel.unknownEngine.WithLabelValues(name).Inc()
	if s.unknownSeen[name] {
		return
	}
	s.unknownSeen[name] = true
	s.log.Info("unknown engine type, scraping with the default engine", "engine", name,
		"defaultEngine", s.engines.def.name, "endpoint", ep.String())
}

func (s *Scraper) getPage() *bytes.Buffer {
	b := s.pages.Get().(*bytes.Buffer)
	b.Reset()
	return b
}

func (s *Scraper) putPage(b *bytes.Buffer) {
	if b.Cap() <= maxPooledPage {
		s.pages.Put(b)
	}
}
