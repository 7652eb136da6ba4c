// Command benchoverhead measures what the EPP adds to a request's path: an
// Envoy-like ext_proc client (package extproc) drives, over loopback and
// under open-loop Poisson load (package loadgen), first the EPP with the
// random picker and live metric scraping, then a no-op ext_proc server (the
// transport floor), at several endpoint counts, concurrencies and prompt
// sizes. Every party is its own process, pinned to its own CPU where the
// machine allows. It writes a JSON report (package overhead) that
// hack/benchreport renders.
//
//	benchoverhead --epp bin/epp --out docs/benchmarks/overhead.json [--quick]
//
// The same binary is the load generator (benchoverhead gen), the no-op
// server (benchoverhead noop) and the simulated model servers' metrics
// pages (benchoverhead metrics); the orchestrator starts those itself.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// childEnv marks processes started by the orchestrator, so a test binary
// re-executed as a child runs the subcommand instead of the tests.
const childEnv = "BENCHOVERHEAD_CHILD"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := dispatch(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchoverhead:", err)
		os.Exit(1)
	}
}

// dispatch runs a subcommand, or the orchestrator when there is none.
func dispatch(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "gen":
			return genMain(ctx, args[1:], stdin, stdout)
		case "noop":
			return noopMain(ctx, args[1:], stdout)
		case "metrics":
			return metricsMain(ctx, args[1:], stdout)
		}
	}
	return runMain(ctx, args, stderr)
}
