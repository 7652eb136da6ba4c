package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/openepp/openepp/hack/benchoverhead/overhead"
	"github.com/openepp/openepp/pkg/extproc"
)

// randomPickerConfig selects the random picker and nothing else to score;
// the data layer is left to its default, so metrics are scraped as usual.
const randomPickerConfig = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: random-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: random-picker
`

// defaultScrapeInterval is the EPP's default --refresh-metrics-interval,
// given explicitly so the report states what was measured.
const defaultScrapeInterval = 50 * time.Millisecond

// runOptions are the orchestrator's flags.
type runOptions struct {
	epp, out, logDir string
	quick, tls       bool
	conns, repeat    int
	response         string
	scrapeInterval   time.Duration
	endpoints        []int
	concurrency      []int
	promptKiB        []int
	// eppFlags are extra EPP flags for what-if runs; the report states them.
	eppFlags []string
	// pickerConfig is the EPP arm's EndpointPickerConfig: the random picker
	// alone, or the file of --config (customConfig), whose overhead a
	// plugin author wants to see.
	pickerConfig string
	customConfig bool
	// compare, when set, is a second EPP build measured like the first in
	// every cell (what-if comparisons of two builds or two configurations),
	// with compareFlags and compareConfig (default: the first's config).
	compare       string
	compareFlags  []string
	compareConfig string
	// refFraction, when > 0, replaces the plan's reference rate fraction.
	refFraction float64
	// refRate, when > 0, is the reference rate itself (req/s), whatever the
	// capacity: comparing two builds at one offered load.
	refRate float64
	// loads, when not nil, replaces the plan's fixed offered rates (empty:
	// none).
	loads []float64
}

func parseRunFlags(args []string, stderr io.Writer) (runOptions, error) {
	var o runOptions
	fs := flag.NewFlagSet("benchoverhead", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.epp, "epp", "", "path of the epp binary to measure (required)")
	fs.StringVar(&o.out, "out", "", "write the JSON report here (default: stdout)")
	fs.StringVar(&o.logDir, "log-dir", "", "folder for the children's logs (default: a temporary folder, removed on success)")
	fs.BoolVar(&o.quick, "quick", false, "smoke-test size: 10 endpoints, concurrency 16, 1 KiB, a few hundred requests per run")
	fs.BoolVar(&o.tls, "tls", false, "TLS on the ext_proc connection in both arms (default plaintext in both)")
	fs.IntVar(&o.conns, "conns", 1, "gRPC connections from the generator")
	fs.IntVar(&o.repeat, "repeat", 0, "runs of each cell's capacity and reference measurements, arms alternating; the report takes medians (default 3, 1 with --quick)")
	fs.StringVar(&o.response, "response", responseFull, "response phase per exchange: full or none")
	fs.DurationVar(&o.scrapeInterval, "scrape-interval", defaultScrapeInterval, "the EPP's --refresh-metrics-interval (what-if runs; the report states it)")
	fs.Float64Var(&o.refFraction, "reference-fraction", 0, "reference rate as a fraction of the EPP arm's capacity (what-if runs; default 0.5; the report states it)")
	fs.Float64Var(&o.refRate, "reference-rate", 0, "reference rate in req/s for every cell instead of a fraction of capacity, so two builds "+
		"(whose capacities differ) are compared at one offered load (what-if runs; the report states it)")
	fs.Func("load-rates", "fixed offered rates in req/s at which the profiled cell's arms are also compared, or none "+
		"(default 1000,2000,3000; 200 with --quick)", func(s string) error {
		o.loads = []float64{}
		if s == "none" {
			return nil
		}
		var ns []int
		if err := parseInts(s, &ns); err != nil {
			return err
		}
		for _, n := range ns {
			o.loads = append(o.loads, float64(n))
		}
		return nil
	})
	intsFlag(fs, &o.endpoints, "endpoints", "endpoint counts (default 10,100,1000)")
	intsFlag(fs, &o.concurrency, "concurrency", "concurrencies (default 1,16,64)")
	intsFlag(fs, &o.promptKiB, "prompt-kib", "prompt sizes in KiB (default 1,100)")
	fs.Func("config", "an EndpointPickerConfig file for the EPP arm instead of the random picker alone, to measure "+
		"what a plugin configuration costs per request (the report states it)", func(path string) error {
		b, err := readConfig(path)
		o.pickerConfig, o.customConfig = b, err == nil
		return err
	})
	fs.StringVar(&o.compare, "compare", "", "a second epp binary (or the same one with other flags or config) measured like "+
		"--epp in every cell, the two alternating run by run, so the report can pair their differences")
	fs.Func("compare-flag", "an extra flag for the --compare EPP only (repeatable)", func(s string) error {
		if !strings.HasPrefix(s, "-") {
			return fmt.Errorf("%q is not a flag", s)
		}
		o.compareFlags = append(o.compareFlags, s)
		return nil
	})
	fs.Func("compare-config", "an EndpointPickerConfig file for the --compare EPP (default: the --epp arm's)", func(path string) error {
		b, err := readConfig(path)
		o.compareConfig = b
		return err
	})
	fs.Func("epp-flag", "an extra EPP flag such as --metrics-scrape-slots=-1 (what-if runs; repeatable; the report states them)", func(s string) error {
		if !strings.HasPrefix(s, "-") {
			return fmt.Errorf("%q is not a flag", s)
		}
		o.eppFlags = append(o.eppFlags, s)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if !o.customConfig {
		o.pickerConfig = randomPickerConfig
	}
	if o.compare != "" && o.compareConfig == "" {
		o.compareConfig = o.pickerConfig
	}
	var errs []error
	if o.epp == "" {
		errs = append(errs, errors.New("--epp is required"))
	}
	if o.conns < 1 {
		errs = append(errs, fmt.Errorf("--conns must be >= 1, got %d", o.conns))
	}
	if o.repeat < 0 {
		errs = append(errs, fmt.Errorf("--repeat must be >= 1, got %d", o.repeat))
	}
	if o.refFraction < 0 || o.refFraction > 1 {
		errs = append(errs, fmt.Errorf("--reference-fraction must be in (0, 1], got %v", o.refFraction))
	}
	switch {
	case o.refRate < 0:
		errs = append(errs, fmt.Errorf("--reference-rate must be > 0, got %v", o.refRate))
	case o.refRate > 0 && o.refFraction > 0:
		errs = append(errs, errors.New("--reference-rate and --reference-fraction exclude each other"))
	}
	if o.scrapeInterval <= 0 {
		errs = append(errs, fmt.Errorf("--scrape-interval must be > 0, got %s", o.scrapeInterval))
	}
	if o.response != responseFull && o.response != responseNone {
		errs = append(errs, fmt.Errorf("--response must be full or none, got %q", o.response))
	}
	if o.compare == "" && (len(o.compareFlags) > 0 || o.compareConfig != "") {
		errs = append(errs, errors.New("--compare-flag and --compare-config need --compare"))
	}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %v", fs.Args()))
	}
	return o, errors.Join(errs...)
}

// readConfig reads an EndpointPickerConfig file for an EPP arm; the EPP
// itself validates it when the arm starts.
func readConfig(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return "", fmt.Errorf("%s is empty", path)
	}
	return string(b), nil
}

// intsFlag binds a comma-separated list of positive integers.
func intsFlag(fs *flag.FlagSet, dst *[]int, name, usage string) {
	fs.Func(name, usage, func(s string) error { return parseInts(s, dst) })
}

// parseInts replaces *dst with the comma-separated positive integers in s.
func parseInts(s string, dst *[]int) error {
	*dst = nil
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("%q is not a positive integer", f)
		}
		*dst = append(*dst, n)
	}
	return nil
}

// runMain is the orchestrator: it runs the matrix and writes the report.
func runMain(ctx context.Context, args []string, stderr io.Writer) error {
	o, err := parseRunFlags(args, stderr)
	if err != nil {
		return err
	}
	r, cleanup, err := newRunner(o, stderr)
	if err != nil {
		return err
	}
	rep, err := r.run(ctx)
	cleanup(err == nil)
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if o.out == "" {
		_, err = fmt.Fprintln(os.Stdout, string(data))
		return err
	}
	return os.WriteFile(o.out, append(data, '\n'), 0o644)
}

// profileFile is the EPP CPU profile's name, next to the report.
const profileFile = "overhead-epp-cpu.pprof"

// runner runs the matrix.
type runner struct {
	o      runOptions
	p      plan
	self   string
	pinned bool
	logDir string
	log    io.Writer
	// profileCell is profiled into profilePath (none when "").
	profileCell cellKey
	profilePath string
}

func newRunner(o runOptions, log io.Writer) (*runner, func(bool), error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("find own binary: %w", err)
	}
	if _, err := os.Stat(o.epp); err != nil {
		return nil, nil, fmt.Errorf("--epp: %w", err)
	}
	if o.compare != "" {
		if _, err := os.Stat(o.compare); err != nil {
			return nil, nil, fmt.Errorf("--compare: %w", err)
		}
	}
	r := &runner{o: o, p: newPlan(o), self: self, pinned: canPin(runtime.NumCPU()), logDir: o.logDir, log: log}
	r.profileCell = r.p.profileCell()
	if o.out != "" {
		if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
			return nil, nil, fmt.Errorf("--out: %w", err)
		}
		r.profilePath = filepath.Join(filepath.Dir(o.out), profileFile)
	}
	cleanup := func(bool) {}
	if r.logDir == "" {
		if r.logDir, err = os.MkdirTemp("", "benchoverhead-"); err != nil {
			return nil, nil, fmt.Errorf("log folder: %w", err)
		}
		cleanup = func(ok bool) {
			if ok {
				_ = os.RemoveAll(r.logDir)
				return
			}
			fmt.Fprintln(log, "children's logs kept in", r.logDir)
		}
	} else if err := os.MkdirAll(r.logDir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("log folder: %w", err)
	}
	return r, cleanup, nil
}

func (r *runner) run(ctx context.Context) (*overhead.Report, error) {
	rep := &overhead.Report{
		Schema: overhead.SchemaVersion, Started: time.Now().UTC(), Quick: r.o.quick,
		Command:  commandLine(),
		Machine:  machine(r.pinned),
		Settings: r.settings(),
	}
	if r.profilePath != "" {
		rep.Profile, rep.ProfileCell = profileFile, r.profileCell.String()
	}
	psi := newPressure()
	for _, e := range r.p.endpoints {
		idle, rows, err := r.runEndpoints(ctx, e)
		if err != nil {
			return nil, fmt.Errorf("endpoints=%d: %w", e, err)
		}
		rep.Idle = append(rep.Idle, idle)
		rep.Rows = append(rep.Rows, rows...)
	}
	rep.Machine.LoadAvgEnd, rep.Machine.CPUPressurePct = overhead.LoadAvg(), psi.pct()
	rep.WallSeconds = time.Since(rep.Started).Seconds()
	rep.Settings.MetricsPage = r.p.pageBytes
	return rep, rep.Validate()
}

func (r *runner) settings() overhead.Settings {
	return overhead.Settings{
		TLS: r.o.tls, ScrapeInterval: r.o.scrapeInterval.String(), PickerConfig: r.o.pickerConfig, CustomConfig: r.o.customConfig, EPPFlags: r.o.eppFlags,
		ChunkBytes: extproc.DefaultChunkSize, Response: r.o.response, Connections: r.o.conns,
		ProbeSeconds: r.p.probe.Seconds(), StepSeconds: r.p.step.Seconds(), RefSeconds: r.p.ref.Seconds(),
		Ladder: r.p.ladder, RefFraction: r.p.refFraction, RefRate: r.p.refRate, P99BoundMs: float64(r.p.p99Bound) / float64(time.Millisecond),
		MinDelivered: r.p.minDelivered, MaxRequests: r.p.maxRequests, Repeats: r.p.repeat,
		Compare: r.o.compare, CompareFlags: r.o.compareFlags, ComparePickerConfig: r.o.compareConfig,
	}
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.log, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

// cpu returns the CPU for a role when pinning: the server under test alone
// on CPU 0, everything else on CPU 1.
func (r *runner) cpu(server bool) int {
	switch {
	case !r.pinned:
		return -1
	case server:
		return 0
	default:
		return 1
	}
}

// commandLine is this process's command line with paths under the working
// folder made relative, so the report does not depend on the checkout.
func commandLine() string {
	wd, _ := os.Getwd()
	args := append([]string{os.Args[0]}, os.Args[1:]...)
	for i, a := range args {
		prefix, path, _ := strings.Cut(a, "=")
		if path == "" {
			prefix, path = "", a
		} else {
			prefix += "="
		}
		if rel, err := filepath.Rel(wd, path); err == nil && wd != "" && filepath.IsAbs(path) && !strings.HasPrefix(rel, "..") {
			args[i] = prefix + rel
		}
	}
	return strings.Join(args, " ")
}

// machine describes this machine.
func machine(pinned bool) overhead.Machine {
	m := overhead.Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), LoadAvgStart: overhead.LoadAvg(), Commit: overhead.GitCommit()}
	m.CPUModel, m.Kernel = overhead.Host()
	if pinned {
		m.Pinning = "server under test (EPP or no-op) alone on CPU 0 (taskset -c 0, so GOMAXPROCS=1); " +
			"load generator and metrics servers share CPU 1"
	}
	return m
}
