package epp

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/datastore"
	"github.com/openepp/openepp/pkg/discovery"
	"github.com/openepp/openepp/pkg/modelrewrite"
	"github.com/openepp/openepp/pkg/objectives"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/server"
)

// CheckMain runs `epp check` with args and exits non-zero when a problem
// is found.
func CheckMain(args []string, opts ...Option) {
	runSubcommand("check", func(ctx context.Context) error { return Check(ctx, args, os.Stdout, opts...) })
}

// errCheckFailed is Check's error once it has printed the problems.
var errCheckFailed = errors.New("failed (the problems are listed above)")

// Check loads what an EPP started with args (the EPP's own flags) would
// load, without serving or contacting Kubernetes: the flags, the scheduler
// config (built, so every plugin's parameters are checked), the endpoints
// file, the objectives and model-rewrites files and the TLS key pairs. It prints a summary of
// each and every problem found, for a CI job or a change review to run
// before a rollout.
func Check(_ context.Context, args []string, stdout io.Writer, opts ...Option) error {
	st := optionsOf(opts)
	var f Flags
	var printConfig bool
	ok, err := parseSubcommand("check", "Takes the EPP's own flags and checks what an EPP started with them would load, without serving\n"+
		"or contacting Kubernetes: the flags, the scheduler config (every plugin built), the endpoints file,\n"+
		"the objectives and model-rewrites files. Prints a summary of each and every problem; exits 1 if\n"+
		"there is one.", args, stdout, func(fs *flag.FlagSet) {
		f.bind(fs)
		fs.BoolVar(&printConfig, "print-config", false, "also print the effective scheduler config (every default applied) as YAML")
	})
	if !ok {
		return err
	}
	c := checkRun{out: stdout}
	c.report("flags", "ok", f.validate())
	built := c.config(&f, &st)
	if built != nil && (f.ConfigFile != "" || f.ConfigText != "") { // without a config, the flags' check covers it
		name := ""
		if d := built.Discovery(); d != nil {
			name = d.TypedName().Name
		}
		c.report("endpoint source", "ok", f.checkConfigSource(name))
		if d, ok := built.Discovery().(interface{ Path() string }); ok {
			specs, err := discovery.LoadFile(d.Path())
			c.report("discovery file", fmt.Sprintf("%s: %d endpoints", d.Path(), len(specs)), err)
		}
	}
	c.files(&f)
	c.certificates(&f)
	if f.Kube.enabled() {
		fmt.Fprintln(stdout, "kubernetes: the API server is not contacted (pools, objectives and rewrites are not read)")
	}
	if built != nil && printConfig {
		y, err := yaml.Marshal(built.Config)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "effective config:\n%s", y)
	}
	if c.problems > 0 {
		fmt.Fprintf(stdout, "FAILED: %d problem(s)\n", c.problems)
		return errCheckFailed
	}
	fmt.Fprintln(stdout, "OK")
	return nil
}

// checkRun prints each item's summary or problems and counts the problems.
type checkRun struct {
	out      io.Writer
	problems int
}

// report prints what's summary when err is nil, else every problem err
// joins, one per line.
func (c *checkRun) report(what, summary string, err error) {
	if err == nil {
		fmt.Fprintf(c.out, "%s: %s\n", what, summary)
		return
	}
	lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
	c.problems += len(lines)
	fmt.Fprintf(c.out, "%s: FAILED\n", what)
	for _, l := range lines {
		fmt.Fprintf(c.out, "  %s\n", l)
	}
}

// config builds the scheduler config as the serving EPP would (nil on a
// problem).
func (c *checkRun) config(f *Flags, st *settings) *config.Built {
	src, cfg, registry, err := readConfig(f, st)
	if err != nil {
		c.report("config", "", err)
		return nil
	}
	several := len(f.declaredPools()) > 1 || f.Kube.PickerService != ""
	built, err := config.BuildWith(cfg, config.BuildOptions{Registry: registry, Seed: 1, Handle: &scheduler.Handle{
		Log: logr.Discard(), Clock: scheduler.RealClock{}, Endpoints: datastore.New().Snapshot,
		Registerer: prometheus.NewRegistry(), StalenessThreshold: f.StalenessThreshold, UpstreamScoring: f.UpstreamScoring,
	}, ModelLists: several})
	if err != nil {
		c.report("config", "", fmt.Errorf("%s: %w", src, err))
		return nil
	}
	c.report("config", src.String()+", "+describeConfig(built), nil)
	for _, w := range built.Warnings {
		fmt.Fprintf(c.out, "  warning: %s\n", w)
	}
	return built
}

// describeConfig summarises a built config on a few lines: its API
// version, feature gates, flow control and each profile's plugins.
func describeConfig(b *config.Built) string {
	cfg := b.Config
	var s strings.Builder
	fmt.Fprintf(&s, "apiVersion %s, %d plugins", cfg.APIVersion, len(cfg.Plugins))
	if len(cfg.FeatureGates) > 0 {
		fmt.Fprintf(&s, ", feature gates %s", strings.Join(cfg.FeatureGates, ", "))
	}
	if b.FlowControl() != nil {
		s.WriteString(", flow control on")
	}
	for _, p := range cfg.SchedulingProfiles {
		refs := make([]string, 0, len(p.Plugins))
		for _, pp := range p.Plugins {
			ref := pp.PluginRef
			if inst, ok := b.Plugin(pp.PluginRef); ok {
				if _, scorer := inst.(scheduler.Scorer); scorer {
					w := 1.0
					if pp.Weight != nil {
						w = *pp.Weight
					}
					ref += " ×" + strconv.FormatFloat(w, 'g', -1, 64)
				}
			}
			refs = append(refs, ref)
		}
		fmt.Fprintf(&s, "\n  profile %s: %s", p.Name, strings.Join(refs, ", "))
	}
	return s.String()
}

// files loads the endpoints, objectives and model-rewrites files the flags
// name.
func (c *checkRun) files(f *Flags) {
	if f.Endpoints != "" {
		specs, err := discovery.ParseList(f.Endpoints)
		c.report("endpoints", fmt.Sprintf("%d endpoints", len(specs)), err)
	}
	if f.EndpointsFile != "" {
		specs, err := discovery.LoadFile(f.EndpointsFile)
		summary := fmt.Sprintf("%s: %d endpoints", f.EndpointsFile, len(specs))
		if pools, _ := filePools(f.EndpointsFile); len(pools) > 0 {
			summary += " in pools " + strings.Join(pools, ", ")
		}
		c.report("endpoints file", summary, err)
	}
	if f.ObjectivesFile != "" {
		t, err := objectives.Load(f.ObjectivesFile)
		n := 0
		if t != nil {
			n = len(t.All)
		}
		c.report("objectives file", fmt.Sprintf("%s: %d objectives", f.ObjectivesFile, n), err)
	}
	if f.ModelRewritesFile != "" {
		t, err := modelrewrite.Load(f.ModelRewritesFile)
		n := 0
		if t != nil {
			n = t.Objects()
		}
		c.report("model rewrites file", fmt.Sprintf("%s: %d objects", f.ModelRewritesFile, n), err)
	}
}

// certificates loads the key pairs and CA bundles the flags name.
func (c *checkRun) certificates(f *Flags) {
	if f.SecureServing && f.CertPath != "" {
		_, err := server.TLSConfig(f.CertPath, false, logr.Discard())
		c.report("ext_proc certificate", f.CertPath+": ok", err)
	}
	if f.TLS.metricsCertDir != "" {
		_, err := f.TLS.metricsTLS(logr.Discard())
		c.report("metrics certificate", f.TLS.metricsCertDir+": ok", err)
	}
}
