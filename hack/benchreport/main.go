// Command benchreport assembles docs/benchmarks.md, run by `make bench`:
// machine and versions, the exact commands, the Go micro-benchmarks (run
// now with --run-micro, or read from a saved go test -bench output), the
// overhead benchmark's table and plots (from hack/benchoverhead's JSON
// report), the fleet simulation's report (docs/benchmarks/fleet.md from
// make bench-fleet, included with its plots, or reported missing), and the
// caveats that bound what the numbers mean.
//
//	go run ./hack/benchreport --run-micro
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/openepp/openepp/hack/benchoverhead/overhead"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	dir, out  string
	runMicro  bool
	benchtime string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("benchreport", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.dir, "dir", "docs/benchmarks", "folder of the inputs (micro.txt, overhead.json, fleet.md) and of the plots")
	fs.StringVar(&o.out, "out", "docs/benchmarks.md", "the report to write")
	fs.BoolVar(&o.runMicro, "run-micro", false, "run the Go micro-benchmarks now (from the module root) and save them to <dir>/micro.txt")
	fs.StringVar(&o.benchtime, "benchtime", "1s", "go test -benchtime for --run-micro")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	return o, nil
}

func run(ctx context.Context, args []string, log io.Writer) error {
	o, err := parseFlags(args, log)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return fmt.Errorf("output folder: %w", err)
	}
	if o.runMicro {
		if err := runMicro(ctx, o.benchtime, ".", filepath.Join(o.dir, "micro.txt"), log); err != nil {
			return err
		}
	}
	var buf bytes.Buffer
	if err := assemble(ctx, &buf, o, collectMachine(time.Now())); err != nil {
		return err
	}
	if err := os.WriteFile(o.out, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	fmt.Fprintln(log, "wrote", o.out)
	return nil
}

// inputs are the results the report is made of; nil or empty when absent.
type inputs struct {
	micro    []benchmark
	overhead *overhead.Report
	profile  *cpuProfile
	plots    []string // overhead plots, relative to the report
	rel      string   // the input folder, relative to the report
}

func load(ctx context.Context, o options) (inputs, error) {
	rel, err := filepath.Rel(filepath.Dir(o.out), o.dir)
	if err != nil {
		rel = o.dir
	}
	in := inputs{rel: filepath.ToSlash(rel)}
	f, err := os.Open(filepath.Join(o.dir, "micro.txt"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return in, fmt.Errorf("micro-benchmarks: %w", err)
	default:
		in.micro, err = parseBench(f)
		f.Close()
		if err != nil {
			return in, fmt.Errorf("micro-benchmarks: %w", err)
		}
	}
	path := filepath.Join(o.dir, "overhead.json")
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return in, nil
	}
	if in.overhead, err = overhead.Load(path); err != nil {
		return in, err
	}
	plots, err := overheadPlots(in.overhead, o.dir)
	if err != nil {
		return in, err
	}
	if in.overhead.Profile != "" {
		if in.profile, err = readProfile(ctx, filepath.Join(o.dir, in.overhead.Profile)); err != nil {
			return in, err
		}
	}
	for _, p := range plots {
		in.plots = append(in.plots, in.rel+"/"+p)
	}
	return in, nil
}
