// Package epp assembles the Endpoint Picker from its parts: it parses the
// flags, builds the datastore, endpoint sources, metrics scraper, scheduler
// and servers, and runs them until the context ends. cmd/epp is a thin main
// around Run; out-of-tree plugins come in through WithPlugins.
package epp

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/openepp/openepp/pkg/scheduler"
)

// Option customises the EPP beyond its flags.
type Option func(*settings)

type settings struct {
	plugins []scheduler.Registration
	onReady func(Addrs)
	log     *logr.Logger
	getenv  func(string) string
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
}

// optionsOf applies opts to fresh settings.
func optionsOf(opts []Option) settings {
	var st settings
	for _, o := range opts {
		o(&st)
	}
	return st
}

// WithEnv makes the EPP read its environment (OTEL_*) through getenv
// instead of os.Getenv, so tests can run several differently configured
// EPPs in one process.
func WithEnv(getenv func(string) string) Option {
	return func(s *settings) { s.getenv = getenv }
}

// WithPlugins adds out-of-tree plugin types to the registry; they can then
// be used in the config file like built-ins.
func WithPlugins(regs ...scheduler.Registration) Option {
	return func(s *settings) { s.plugins = append(s.plugins, regs...) }
}

// WithReadyCallback is called once every listener is bound, with the
// actual addresses (useful with port 0 in tests).
func WithReadyCallback(fn func(Addrs)) Option {
	return func(s *settings) { s.onReady = fn }
}

// WithReplicaSyncDial makes replica sync open its connections to peers
// with dial: tests map the addresses of EndpointSlices, which may not be
// loopback addresses, onto 127.0.0.1.
func WithReplicaSyncDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return func(s *settings) { s.dial = dial }
}

// WithLogger replaces the zap logger built from the flags.
func WithLogger(log logr.Logger) Option {
	return func(s *settings) { s.log = &log }
}

// Addrs are the bound listener addresses.
type Addrs struct {
	GRPC, Health, Metrics string
	// ReplicaSync is empty unless --replica-sync-port.
	ReplicaSync string
}

// Main runs the EPP with os.Args and exits on error; SIGINT/SIGTERM start a
// graceful drain. Its subcommands `simulate`, `cost` and `check`
// (SimulateMain, CostMain, CheckMain) take the same options, so an EPP
// built with its own plugins can evaluate, time and check configs that use
// them.
func Main(opts ...Option) {
	if len(os.Args) > 1 { // subcommands, so a binary with its own plugins has them too
		switch os.Args[1] {
		case "simulate":
			SimulateMain(os.Args[2:], opts...)
			return
		case "cost":
			CostMain(os.Args[2:], opts...)
			return
		case "check":
			CheckMain(os.Args[2:], opts...)
			return
		}
	}
	tuneGC()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, os.Args[1:], opts...); err != nil {
		fmt.Fprintln(os.Stderr, "epp:", err)
		os.Exit(1)
	}
}

// defaultGCPercent is the EPP binary's garbage-collection target when GOGC
// is not set. The EPP's live heap is small (tens of MB) while every request
// and scrape allocates, so Go's default of 100 collects several times a
// second under load; on the one or two cores an EPP gets, each collection
// steals CPU from routing decisions and shows up in their tail. 400 measured
// about 20% more requests per core (docs/benchmarks.md) for a heap up to 5×
// the live one; GOMEMLIMIT (set in manifests/) still bounds it.
const defaultGCPercent = 400

// tuneGC applies defaultGCPercent unless the operator chose GOGC.
func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
}

// Run parses args and runs the EPP until ctx ends.
func Run(ctx context.Context, args []string, opts ...Option) error {
	st := optionsOf(opts)
	app, err := assemble(args, &st, prometheus.NewRegistry())
	if err != nil {
		return err
	}
	if st.onReady != nil {
		st.onReady(app.addrs)
	}
	f, log := app.flags, app.log
	log.Info("endpoint picker started", "grpc", app.addrs.GRPC, "health", app.addrs.Health, "metrics", app.addrs.Metrics,
		"grpcTLS", f.extProcTLSMode(), "metricsTLS", f.TLS.metricsMode())
	err = app.run(ctx)
	log.Info("endpoint picker stopped")
	return err
}

// assemble parses args and builds the EPP with its listeners bound. Every
// collector it serves is registered on reg: the Go runtime's, the
// process's and the build's, then the EPP's own.
func assemble(args []string, st *settings, reg registry) (*app, error) {
	var f Flags
	fs := flag.NewFlagSet("epp", flag.ContinueOnError)
	f.bind(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	f.compat.record(fs)
	if err := f.validate(); err != nil {
		return nil, err
	}
	log := newLogger(&f)
	if st.log != nil {
		log = *st.log
	}
	f.compat.logIgnored(log)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo())
	return build(&f, st, log, reg)
}

func listen(bind string, port int) (net.Listener, error) {
	if port < 0 {
		return nil, errors.New("negative port")
	}
	lis, err := net.Listen("tcp", net.JoinHostPort(bind, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return lis, nil
}
