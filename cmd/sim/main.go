// Command sim runs one or more simulated vLLM-like model servers (see
// package sim). Each instance prints one line to stdout once it listens:
//
//	listening http://127.0.0.1:8000 instance=0 model=sim-model metrics=vllm:/metrics
//
// (ending in " pd-sidecar=true" with --pd-sidecar). With that flag every
// instance is fronted, on its own port, by a P/D decode sidecar (package
// pdsidecar), so "sim --instances 4 --pd-sidecar" gives four servers that
// each decode with a remote prefill when a request names a prefiller in
// x-prefiller-host-port, and each serve the prefills others send them. A
// request naming a peer in x-kv-cache-source-host-port has the instance
// computing its prompt pull the prefix that peer holds (P2P KV pulls; see
// packages pdsidecar and sim).
//
// It stops cleanly on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/openepp/openepp/pkg/sim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "sim: %v\n", err)
		os.Exit(1)
	}
}

// run starts every instance, reports their addresses, and serves until ctx
// is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	log, sync := newLogger(stderr, opts.verbosity)
	defer sync()

	var insts []*sim.Instance
	var pubs []*sim.KVEventPublisher
	pubCtx, stopPubs := context.WithCancel(ctx)
	defer stopPubs()
	closeAll := func() {
		for _, i := range insts {
			_ = i.Close()
		}
		stopPubs()
	}
	for k, cfg := range opts.configs() {
		cfg.Logger = log.WithValues("instance", k)
		if opts.kvEvents != "" {
			pub, err := sim.NewKVEventPublisher(pubCtx, opts.kvEvents, opts.kvEventsBind)
			if err != nil {
				closeAll()
				return fmt.Errorf("instance %d: --kv-events-endpoint: %w", k, err)
			}
			pubs = append(pubs, pub)
			cfg.KVEvents = pub
		}
		if opts.pdSidecar {
			pd := opts.pd
			pd.Logger = cfg.Logger.WithName("pd-sidecar")
			cfg.Frontend = pd.Wrap
		}
		inst, err := sim.New(cfg)
		if err != nil {
			closeAll()
			return fmt.Errorf("instance %d: %w", k, err)
		}
		insts = append(insts, inst)
	}
	suffix := ""
	if opts.pdSidecar {
		suffix = " pd-sidecar=true"
	}
	for k, pub := range pubs {
		pub.SetTopic(sim.KVEventTopic(insts[k].HostPort(), insts[k].Model()))
		lg := log.WithValues("instance", k)
		go pub.Run(pubCtx, func(err error) { lg.V(1).Info("KV events not sent", "error", err.Error()) })
	}
	if len(pubs) > 0 {
		suffix += " kv-events=" + opts.kvEvents
	}
	for k, inst := range insts {
		fmt.Fprintf(stdout, "listening %s instance=%d model=%s metrics=%s:%s%s\n",
			inst.URL(), k, inst.Model(), opts.base.MetricsEngine, inst.MetricsPath(), suffix)
	}
	return serveAll(ctx, insts)
}

func serveAll(ctx context.Context, insts []*sim.Instance) error {
	var wg sync.WaitGroup
	errs := make([]error, len(insts))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for k, inst := range insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := inst.Run(ctx); err != nil {
				errs[k] = fmt.Errorf("instance %d: %w", k, err)
				cancel()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func newLogger(w io.Writer, verbosity int) (logr.Logger, func()) {
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(w), zap.NewAtomicLevelAt(zapcore.Level(-verbosity)))
	z := zap.New(core)
	return zapr.NewLogger(z), func() { _ = z.Sync() }
}
