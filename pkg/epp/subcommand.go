package epp

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

// runSubcommand runs an `epp <name>` subcommand until it returns or
// SIGINT/SIGTERM cancels it, and exits non-zero on error.
func runSubcommand(name string, run func(ctx context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "epp %s: %v\n", name, err)
		os.Exit(1)
	}
}

// parseSubcommand parses a subcommand's args with the flags bind declares,
// printing usage (a paragraph about the subcommand, then the flags) on
// -help, to stdout. It reports false when there is nothing to run (-help).
func parseSubcommand(name, about string, args []string, stdout io.Writer, bind func(*flag.FlagSet)) (bool, error) {
	fs := flag.NewFlagSet("epp "+name, flag.ContinueOnError)
	fs.SetOutput(stdout)
	bind(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: epp %s [flags]\n\n%s Flags:\n\n", name, about)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return false, nil
		}
		return false, err
	}
	if fs.NArg() > 0 {
		return false, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return true, nil
}
