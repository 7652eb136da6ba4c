package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/sim/engine"
)

// shutdownGrace bounds how long Run waits for in-flight requests.
const shutdownGrace = 2 * time.Second

// Instance is one simulated model server: an engine, its real-time driver
// and an HTTP server. Create it with New and serve with Run, or use Start.
type Instance struct {
	cfg     resolved
	log     logr.Logger
	drv     *driver
	handler http.Handler
	flavor  *flavor
	models  *modelSet
	addr    string // host:port actually bound
	// engineID is the remote_engine_id of prefill answers; the counters
	// count accepted P/D and P2P requests (KVTransferStats).
	engineID                       string
	remoteDecodes, remotePrefills  atomic.Uint64
	p2pRequests, p2pLookupFailures atomic.Uint64
	// peers asks P2P sources what they hold (p2p.go).
	peers *http.Client
	// gpu turns the engine's busy time into DCGM_FI_DEV_GPU_UTIL (gpu.go).
	gpu *gpuMeter

	closing   chan struct{} // closed when Run begins shutting down
	closeOnce sync.Once

	mu          sync.Mutex
	faults      Faults
	ln          net.Listener // nil while refusing
	srv         *http.Server // nil while refusing or not running
	running     bool
	stopped     bool
	refuseTimer *time.Timer
	wg          sync.WaitGroup // serve goroutines

	// Set by Start.
	cancel context.CancelFunc
	done   chan struct{}
	runErr error
}

// New builds an instance and binds its listener (so URL is known), but
// starts nothing; call Run.
func New(cfg Config) (*Instance, error) {
	rc, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	eng, err := engine.New(rc.engine)
	if err != nil {
		return nil, fmt.Errorf("simulator engine: %w", err)
	}
	if rc.KVEvents != nil {
		eng.SetKVEventListener(rc.KVEvents)
	}
	if rc.engine.MaxCPULoRAs > 0 {
		// vLLM loads its static adapters at startup; without an explicit
		// host cache they load on first use, as before it existed.
		eng.PreloadLoRAs(rc.LoRAs)
	}
	reg := prometheus.NewRegistry()
	fl := flavorFor(rc.MetricsEngine)
	i := &Instance{
		cfg:     rc,
		log:     rc.Logger.WithValues("model", rc.Model),
		flavor:  fl,
		models:  newModelSet(rc.ServedModelNames, rc.LoRAs),
		closing: make(chan struct{}),
		faults:  rc.Faults,
		peers:   newPeerClient(),
		gpu:     newGPUMeter(),
	}
	obs, err := newObservers(fl, rc.Model, reg)
	if err != nil {
		return nil, err
	}
	i.drv = newDriver(eng, obs)
	if err := reg.Register(newCollector(fl, i)); err != nil {
		return nil, fmt.Errorf("register simulator metrics: %w", err)
	}
	i.handler = i.routes(reg)
	if rc.Frontend != nil {
		if i.handler, err = rc.Frontend(i.handler, reg); err != nil {
			return nil, fmt.Errorf("simulator frontend: %w", err)
		}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(rc.Address, strconv.Itoa(rc.Port)))
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	i.addr = ln.Addr().String()
	i.engineID = engineIDFor(i.addr, rc.Model)
	i.ln = ln
	if rc.Faults.RefuseConnections {
		i.refuseLocked(rc.Faults.RefuseFor)
	}
	return i, nil
}

// Start is New plus Run in a goroutine, for tests and tools embedding
// simulators: Close stops it. The instance accepts requests on return.
func Start(ctx context.Context, cfg Config) (*Instance, error) {
	i, err := New(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	i.cancel = cancel
	i.done = make(chan struct{})
	go func() {
		defer close(i.done)
		i.runErr = i.Run(ctx)
	}()
	return i, nil
}

// Run serves until ctx is done, then shuts down: hanging and streaming
// handlers end at once, other requests get shutdownGrace to finish.
func (i *Instance) Run(ctx context.Context) error {
	i.mu.Lock()
	if i.running || i.stopped {
		i.mu.Unlock()
		return errors.New("simulator: Run called twice")
	}
	i.running = true
	if i.ln != nil {
		i.serveLocked()
	}
	i.mu.Unlock()
	i.log.Info("simulator serving", "address", i.URL(), "metricsEngine", i.cfg.MetricsEngine)

	driverDone := make(chan struct{})
	go func() {
		defer close(driverDone)
		i.drv.run(ctx, i.closing)
	}()
	<-ctx.Done()
	i.closeOnce.Do(func() { close(i.closing) })

	i.mu.Lock()
	i.stopped = true
	srv, ln := i.srv, i.ln
	i.srv, i.ln = nil, nil
	if i.refuseTimer != nil {
		i.refuseTimer.Stop()
	}
	i.mu.Unlock()
	var err error
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
		if err = srv.Shutdown(sctx); err != nil {
			err = errors.Join(fmt.Errorf("simulator shutdown: %w", err), srv.Close())
		}
		cancel()
	} else if ln != nil {
		err = ln.Close()
	}
	i.wg.Wait()
	<-driverDone
	i.peers.CloseIdleConnections()
	i.log.Info("simulator stopped", "address", i.URL())
	return err
}

// Close stops an instance made by Start and waits for it; for one made by
// New and never run it releases the listener. It is idempotent.
func (i *Instance) Close() error {
	if i.cancel != nil {
		i.cancel()
		<-i.done
		return i.runErr
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.stopped = true
	if i.refuseTimer != nil {
		i.refuseTimer.Stop()
	}
	if i.ln != nil && !i.running {
		err := i.ln.Close()
		i.ln = nil
		return err
	}
	return nil
}

// URL is the base URL, e.g. "http://127.0.0.1:8000".
func (i *Instance) URL() string { return "http://" + i.addr }

// HostPort is the bound "ip:port".
func (i *Instance) HostPort() string { return i.addr }

// Port is the bound port.
func (i *Instance) Port() int {
	_, p, _ := net.SplitHostPort(i.addr)
	n, _ := strconv.Atoi(p)
	return n
}

// MetricsPath is where this instance serves metrics ("/metrics", or
// "/prometheus/metrics" for trtllm-serve).
func (i *Instance) MetricsPath() string { return i.flavor.path }

// Model is the base model name.
func (i *Instance) Model() string { return i.cfg.Model }

// EngineConfig returns the engine parameters in effect.
func (i *Instance) EngineConfig() engine.Config { return i.cfg.engine }

// EngineMetrics returns the engine's current state, as /metrics would.
func (i *Instance) EngineMetrics() engine.Metrics { return i.drv.metrics() }

// Faults returns the fault knobs in effect.
func (i *Instance) Faults() Faults {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.faults
}

// SetFaults replaces the fault knobs. Switching RefuseConnections off binds
// the same address again, which fails if someone else took the port.
func (i *Instance) SetFaults(f Faults) error {
	if err := f.validate(); err != nil {
		return fmt.Errorf("set faults: %w", err)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.stopped {
		return errors.New("set faults: simulator stopped")
	}
	i.faults = f
	if i.refuseTimer != nil {
		i.refuseTimer.Stop()
		i.refuseTimer = nil
	}
	if f.RefuseConnections {
		i.refuseLocked(f.RefuseFor)
		return nil
	}
	return i.listenLocked()
}

// refuseLocked drops the listener and every connection, and arms the timer
// that listens again after d (if d > 0).
func (i *Instance) refuseLocked(d time.Duration) {
	if i.srv != nil {
		_ = i.srv.Close() // closes the listener too
	} else if i.ln != nil {
		_ = i.ln.Close()
	}
	i.srv, i.ln = nil, nil
	if d > 0 {
		i.refuseTimer = time.AfterFunc(d, i.endRefusal)
	}
	i.log.V(1).Info("simulator refusing connections", "for", d)
}

func (i *Instance) endRefusal() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.stopped || !i.faults.RefuseConnections {
		return
	}
	i.faults.RefuseConnections, i.faults.RefuseFor = false, 0
	i.refuseTimer = nil
	if err := i.listenLocked(); err != nil {
		i.log.Error(err, "listening again after refusal")
	}
}

// listenLocked binds the address again if it is not bound, and serves if
// Run is active.
func (i *Instance) listenLocked() error {
	if i.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", i.addr)
	if err != nil {
		return fmt.Errorf("listen again on %s: %w", i.addr, err)
	}
	i.ln = ln
	if i.running {
		i.serveLocked()
	}
	return nil
}

func (i *Instance) serveLocked() {
	srv := &http.Server{
		Handler:           i.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	i.srv = srv
	ln := i.ln
	i.wg.Add(1)
	go func() {
		defer i.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			i.log.Error(err, "serving")
		}
	}()
}
