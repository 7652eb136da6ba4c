// Command gateway is the local demo's data plane: an HTTP reverse proxy that
// asks the endpoint picker over ext_proc (as Envoy's ext_proc filter does)
// which model server serves each request, then forwards it there. See
// package gateway.
//
//	gateway --listen 127.0.0.1:8080 --epp 127.0.0.1:9002
//	curl -si localhost:8080/v1/completions -d '{"model":"m","prompt":"hi"}'
//	# x-gateway-destination-endpoint-served: 127.0.0.1:8000
//
// It stops cleanly on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/gateway"
)

type options struct {
	listen         string
	epp            string
	insecureTLS    bool
	plaintext      bool
	requestTimeout time.Duration
	failOpen       string
	verbosity      int
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "gateway: %v\n", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8080", "HTTP listen address")
	fs.StringVar(&o.epp, "epp", "127.0.0.1:9002", "endpoint picker ext_proc gRPC address")
	fs.BoolVar(&o.insecureTLS, "epp-insecure-tls", true, "use TLS to the EPP without verifying its certificate (the EPP's default certificate is self-signed)")
	fs.BoolVar(&o.plaintext, "epp-plaintext", false, "talk to the EPP without TLS (EPP --secure-serving=false)")
	fs.DurationVar(&o.requestTimeout, "request-timeout", 0, "limit for a whole request, 0 for none")
	fs.StringVar(&o.failOpen, "fail-open-endpoints", "", "comma-separated ip:port list served while the EPP is unreachable (default: answer 503)")
	fs.IntVar(&o.verbosity, "v", 0, "log verbosity; 1 logs one line per request")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return o, nil
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	log, syncLog := newLogger(stderr, o.verbosity)
	defer syncLog()

	var opts []extproc.Option
	switch {
	case o.plaintext:
		opts = append(opts, extproc.WithPlaintext())
	case o.insecureTLS:
		opts = append(opts, extproc.WithInsecureSkipVerify())
	}
	client, err := extproc.Dial(ctx, o.epp, opts...)
	if err != nil {
		return err
	}
	defer client.Close()
	gwOpts := gateway.Options{ExtProc: client, Logger: log, RequestTimeout: o.requestTimeout}
	if o.failOpen != "" {
		gwOpts.FailOpenEndpoints = strings.Split(o.failOpen, ",")
	}
	gw, err := gateway.New(gwOpts)
	if err != nil {
		return err
	}
	defer gw.Close()
	return serve(ctx, log, o.listen, gw)
}

// serve runs the HTTP server until ctx is done, then drains it.
func serve(ctx context.Context, log logr.Logger, addr string, h http.Handler) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %q: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	log.Info("gateway listening", "address", lis.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	<-errc
	log.Info("gateway stopped")
	return nil
}

func newLogger(w io.Writer, verbosity int) (logr.Logger, func()) {
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(w), zap.NewAtomicLevelAt(zapcore.Level(-verbosity)))
	z := zap.New(core)
	return zapr.NewLogger(z), func() { _ = z.Sync() }
}
