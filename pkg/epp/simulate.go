package epp

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/fleet"
	"github.com/openepp/openepp/pkg/sim/engine"
)

// simFlags are the options of `epp simulate`.
type simFlags struct {
	configFile, name, workload, profile, qps, compare, out, freshness, classes, enginePriority string
	servers, warmup, workers, freshnessSeeds, prefill, replicas, seeds, perNode, retryEvicted  int
	crossNode                                                                                  float64
	duration, timeout, scrape, jitter, sloTTFT, sloITL, syncFlush, syncLatency, kvTransfer     time.Duration
	seed                                                                                       uint64
	json, list, replicaSync, syncDispatches                                                    bool
}

func (f *simFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.configFile, "config", "", "EndpointPickerConfig to evaluate (default: the upstream default config, run through OpenEPP's plugins)")
	fs.StringVar(&f.name, "name", "", "label of the evaluated config in results (default: the file name, or ours-default)")
	fs.StringVar(&f.workload, "workload", "shared-prefix", "built-in workload by name or ID (see --list)")
	fs.IntVar(&f.servers, "servers", 0, "simulated model servers (default: the workload's; the KV cache is re-sized by the workload's sizing rule)")
	fs.IntVar(&f.prefill, "prefill", 0, "P/D disaggregation: label the first K servers llm-d.ai/role=prefill and the rest decode (0 ≤ K < servers; "+
		"0: no roles). Evaluate a config with role filters, e.g. config/pd.yaml; label-blind policies such as the baselines use every server")
	fs.StringVar(&f.qps, "qps", "", "comma-separated QPS stages (default: the workload's ladder)")
	fs.DurationVar(&f.duration, "duration", 0, "measured virtual time per stage (default: the workload's)")
	fs.DurationVar(&f.sloTTFT, "slo-ttft", 0, "goodput's time-to-first-token objective (default: the workload's)")
	fs.DurationVar(&f.sloITL, "slo-itl", 0, "goodput's inter-token latency objective, on each request's mean (default: the workload's)")
	fs.IntVar(&f.warmup, "warmup", -1, "requests sent before each stage's measured window (default: the workload's)")
	fs.Uint64Var(&f.seed, "seed", 1, "seed of the arrival trace, prompts and every random choice")
	fs.IntVar(&f.seeds, "seeds", 1, "run seeds --seed … --seed+n-1, averaging each stage over them, and compare the policies seed by "+
		"seed (median ratio, seeds better, sign test), so a difference can be told from one seed's luck")
	fs.IntVar(&f.perNode, "servers-per-node", 0, "place the servers on nodes of this many, dealt round-robin (so a node holds prefill and decode servers "+
		"under --prefill), each endpoint naming its node as topology-extractor reads it; pulls between nodes cost --cross-node-cost times the "+
		"KV-transfer price (0: no topology)")
	fs.Float64Var(&f.crossNode, "cross-node-cost", fleet.DefaultCrossNodeCost, "with --servers-per-node, how many times a pull between nodes costs one within a node (NVLink)")
	fs.DurationVar(&f.kvTransfer, "kv-transfer-time-per-token", 0, "price of pulling one prompt token's KV, for P/D transfers and P2P pulls "+
		"(default: the engine preset's, 1µs on the published ones; a pull from a peer's host memory is slower than NIXL between GPUs)")
	fs.StringVar(&f.profile, "profile", "", "engine preset (default: the workload's; one of "+strings.Join(engine.ProfileNames(), ", ")+")")
	fs.StringVar(&f.compare, "compare", "round-robin,upstream-default", "baselines run on the same trace: random, round-robin, least-queue, upstream-default, prefix-only, ours-default, or config files (a path ending in .yaml, .yml or .json, named by the file's name) (empty for none)")
	fs.StringVar(&f.out, "out", "", "directory to write simulate.json and simulate.md into")
	fs.BoolVar(&f.json, "json", false, "print the JSON report instead of the table")
	fs.BoolVar(&f.list, "list", false, "list the built-in workloads and exit")
	fs.DurationVar(&f.timeout, "timeout", fleet.DefaultTimeout, "clients cancel requests unfinished after this long")
	fs.DurationVar(&f.scrape, "scrape-interval", fleet.DefaultScrapeInterval, "metrics scrape interval")
	fs.DurationVar(&f.jitter, "scrape-jitter", fleet.DefaultScrapeJitter, "uniform ± jitter of each scrape (negative: none)")
	fs.IntVar(&f.workers, "workers", 0, "parallel runs (default GOMAXPROCS)")
	fs.StringVar(&f.freshness, "freshness", "", "also run the evaluated config with these scrape intervals (e.g. 25ms,100ms,200ms), "+
		"paired seed by seed against --scrape-interval, and report what metric freshness is worth to it")
	fs.IntVar(&f.freshnessSeeds, "freshness-seeds", 6, "paired seeds of the --freshness study (1 … n)")
	fs.StringVar(&f.enginePriority, "engine-priority", enginePriorityAuto, "as the EPP's flag, for the evaluated config: on, off, or auto (on for an llm-d config); "+
		"when on, requests carry their class's priority to the servers, which run vLLM's --scheduling-policy priority")
	fs.IntVar(&f.retryEvicted, "retry-evicted", 0, "clients send a request that in-flight eviction ended again, up to N times, after 0.5–1 s, then doubling (0: they do not retry)")
	fs.StringVar(&f.classes, "classes", "", "split the traffic into classes name:share:priority[:ttftSLO[:tpotSLO]],… (SLOs in milliseconds or as durations; e.g. critical:0.2:3:250ms,batch:0.8:-1; the SLOs are sent as x-slo-ttft-ms / x-slo-tpot-ms headers), "+
		"each its own fairness ID, and report each class; configs then shed or queue by priority as they would live")
	fs.IntVar(&f.replicas, "replicas", 1, "run every policy as N active-active EPP replicas, each request handed to the next in turn; "+
		"each replica has its own plugin state (prefix index, in-flight counts, flow-control queue)")
	fs.BoolVar(&f.replicaSync, "replica-sync", false, "with --replicas > 1, replicas share what their approx-prefix-cache-producers record "+
		"and their precise-prefix-cache-producers' speculative entries (replica sync); upstream-default's own state is never shared, as upstream shares nothing")
	fs.BoolVar(&f.syncDispatches, "replica-sync-dispatches", false, "with --replica-sync, also share the dispatches queue-scorers count")
	fs.DurationVar(&f.syncFlush, "replica-sync-interval", fleet.DefaultSyncFlush, "how often a replica sends what it shares "+
		"to the others (0: each at once)")
	fs.DurationVar(&f.syncLatency, "replica-sync-latency", fleet.DefaultSyncLatency, "how long a batch takes to reach the other replicas")
}

// SimulateMain runs `epp simulate` with args (os.Args after "simulate") and
// exits non-zero on error; SIGINT/SIGTERM stop it.
func SimulateMain(args []string, opts ...Option) {
	runSubcommand("simulate", func(ctx context.Context) error { return Simulate(ctx, args, os.Stdout, opts...) })
}

// Simulate evaluates a scheduler config in the fleet simulation (package
// fleet): the config runs through OpenEPP's plugins, plus any given by
// WithPlugins, against baselines on the same deterministic traffic, and a
// table (or JSON) of every stage is written to stdout.
func Simulate(ctx context.Context, args []string, stdout io.Writer, opts ...Option) error {
	st := optionsOf(opts)
	var f simFlags
	ok, err := parseSubcommand("simulate", "Runs a scheduler config through OpenEPP's plugins in the fleet simulation (virtual time,\n"+
		"simulated vLLM-like servers, metrics scraped every 50 ms) against baselines on the same\n"+
		"deterministic traffic, and prints every QPS stage.", args, stdout, f.bind)
	if !ok {
		return err
	}
	if f.list {
		return listWorkloads(stdout)
	}
	m, err := f.matrix(&st)
	if err != nil {
		return err
	}
	study, err := f.freshnessStudy(m)
	if err != nil {
		return err
	}
	rep, err := m.Run(ctx)
	if err != nil {
		return err
	}
	if study != nil {
		if rep.Freshness, err = study.Run(ctx); err != nil {
			return err
		}
	}
	if err := f.write(rep); err != nil {
		return err
	}
	if f.json {
		b, err := rep.JSON()
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	}
	if err := fleet.WriteTable(stdout, rep); err != nil {
		return err
	}
	if err := writeComparisons(stdout, rep, m.Policies); err != nil {
		return err
	}
	if rep.Freshness == nil {
		return nil
	}
	if _, err := fmt.Fprintln(stdout); err != nil {
		return err
	}
	return fleet.WriteFreshness(stdout, rep.Freshness)
}

// freshnessStudy prepares --freshness for the evaluated config (the
// matrix's first policy) on its workload, or returns nil without it.
func (f *simFlags) freshnessStudy(m *fleet.Matrix) (*fleet.Freshness, error) {
	if strings.TrimSpace(f.freshness) == "" {
		return nil, nil
	}
	study := &fleet.Freshness{Workloads: m.Workloads, Policy: m.Policies[0], Base: f.scrape,
		ScrapeJitter: f.jitter, Timeout: f.timeout, Workers: f.workers}
	var errs []error
	intervals, err := fleet.ParseIntervals(f.freshness, f.scrape)
	if err != nil {
		errs = append(errs, fmt.Errorf("--freshness: %w", err))
	}
	study.Intervals = intervals
	if f.freshnessSeeds < 1 || f.freshnessSeeds > 100 {
		errs = append(errs, fmt.Errorf("--freshness-seeds: must be in [1, 100], got %d", f.freshnessSeeds))
	}
	for i := range f.freshnessSeeds {
		study.Seeds = append(study.Seeds, uint64(i+1))
	}
	return study, errors.Join(errs...)
}

// writeComparisons prints the evaluated config (the first policy) against
// each baseline.
func writeComparisons(w io.Writer, rep *fleet.Report, policies []fleet.Policy) error {
	wr := &rep.Workloads[0]
	for _, base := range policies[1:] {
		line, err := fleet.Compare(wr, policies[0].Name, base.Name)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "%s against %s: %s\n", policies[0].Name, base.Name, line); err != nil {
			return err
		}
		seeds, err := fleet.ComparePaired(wr, policies[0].Name, base.Name)
		if err != nil {
			return err
		}
		if seeds == "" { // one seed
			continue
		}
		if _, err := fmt.Fprintf(w, "%s against %s, %s\n", policies[0].Name, base.Name, seeds); err != nil {
			return err
		}
	}
	return nil
}

// matrix turns the flags into the runs to do.
func (f *simFlags) matrix(st *settings) (*fleet.Matrix, error) {
	w, err := f.workloadSpec()
	if err != nil {
		return nil, err
	}
	policy, err := f.policy(st)
	if err != nil {
		return nil, err
	}
	if policy.EnginePriority, err = f.enginePriorityFor(policy.Config); err != nil {
		return nil, err
	}
	base, err := f.baselinePolicies(st, policy.Name)
	if err != nil {
		return nil, err
	}
	policies := append([]fleet.Policy{policy}, base...)
	if f.workers < 0 {
		return nil, fmt.Errorf("--workers: must be >= 0, got %d", f.workers)
	}
	var classes []fleet.Class
	if strings.TrimSpace(f.classes) != "" {
		if classes, err = fleet.ParseClasses(f.classes); err != nil {
			return nil, fmt.Errorf("--classes: %w", err)
		}
	}
	if f.prefill < 0 || f.prefill >= w.Servers {
		return nil, fmt.Errorf("--prefill: must be in [0, %d) (fewer than the %d servers, so that some decode), got %d", w.Servers, w.Servers, f.prefill)
	}
	rep, err := f.replication()
	if err != nil {
		return nil, err
	}
	if f.seeds < 1 || f.seeds > 100 {
		return nil, fmt.Errorf("--seeds: must be in [1, 100], got %d", f.seeds)
	}
	retry := fleet.Retry{Max: f.retryEvicted}
	if err := retry.Validate(); err != nil {
		return nil, fmt.Errorf("--retry-evicted: %w", err)
	}
	seeds := make([]uint64, f.seeds)
	for i := range seeds {
		seeds[i] = f.seed + uint64(i)
	}
	return &fleet.Matrix{
		Workloads: []fleet.Workload{w}, Policies: policies, Seeds: seeds, Workers: f.workers,
		ScrapeInterval: f.scrape, ScrapeJitter: f.jitter, Timeout: f.timeout, Classes: classes, PrefillServers: f.prefill,
		Replication: rep, Topology: fleet.Topology{ServersPerNode: f.perNode, CrossNodeCost: f.crossNode}, Retry: retry,
	}, nil
}

// replication is the EPP replicas of --replicas and --replica-sync*.
func (f *simFlags) replication() (fleet.Replication, error) {
	var errs []error
	if f.replicas < 1 || f.replicas > 64 {
		errs = append(errs, fmt.Errorf("--replicas: must be in [1, 64], got %d", f.replicas))
	}
	if f.replicaSync && f.replicas == 1 {
		errs = append(errs, errors.New("--replica-sync needs --replicas > 1"))
	}
	if f.syncDispatches && !f.replicaSync {
		errs = append(errs, errors.New("--replica-sync-dispatches needs --replica-sync"))
	}
	if f.syncFlush < 0 || f.syncLatency < 0 {
		errs = append(errs, fmt.Errorf("--replica-sync-interval (%s) and --replica-sync-latency (%s) must be >= 0", f.syncFlush, f.syncLatency))
	}
	r := fleet.Replication{Replicas: f.replicas, ReplicaSync: f.replicaSync, SyncDispatches: f.syncDispatches, SyncFlush: f.syncFlush, SyncLatency: f.syncLatency}
	if r.SyncFlush == 0 { // fleet reads zero as the default
		r.SyncFlush = -1
	}
	if r.SyncLatency == 0 {
		r.SyncLatency = -1
	}
	return r, errors.Join(errs...)
}

// workloadSpec is the named workload with the flags' overrides applied.
func (f *simFlags) workloadSpec() (fleet.Workload, error) {
	w, err := fleet.WorkloadByName(f.workload)
	if err != nil {
		return w, fmt.Errorf("--workload: %w", err)
	}
	w.MinSeeds = 0 // the runs --seed and --seeds ask for
	var errs []error
	if f.servers != 0 {
		w.Servers = f.servers
	}
	if f.qps != "" {
		if w.Ladder, err = parseQPS(f.qps); err != nil {
			errs = append(errs, fmt.Errorf("--qps: %w", err))
		}
	}
	if f.duration != 0 {
		w.Duration = f.duration
	}
	if f.warmup >= 0 {
		w.WarmupRequests = f.warmup
	}
	if f.sloTTFT < 0 || f.sloITL < 0 {
		errs = append(errs, fmt.Errorf("--slo-ttft (%s) and --slo-itl (%s) must be >= 0", f.sloTTFT, f.sloITL))
	}
	if f.sloTTFT > 0 {
		w.SLO.TTFT = f.sloTTFT
	}
	if f.sloITL > 0 {
		w.SLO.ITL = f.sloITL
	}
	switch {
	case f.kvTransfer < 0 || f.kvTransfer > time.Second:
		errs = append(errs, fmt.Errorf("--kv-transfer-time-per-token: must be in [0, 1s], got %s", f.kvTransfer))
	case f.kvTransfer > 0:
		w.KVTransferPerToken = f.kvTransfer
	}
	if f.profile != "" {
		if _, err := engine.Profile(f.profile); err != nil {
			errs = append(errs, fmt.Errorf("--profile: %w", err))
		}
		w.Profile = f.profile
	}
	if err := errors.Join(errs...); err != nil {
		return w, err
	}
	if err := w.Validate(); err != nil {
		return w, fmt.Errorf("workload %q with the given flags: %w", w.Name, err)
	}
	return w, nil
}

// enginePriorityFor resolves --engine-priority for the evaluated config, as
// the EPP resolves its flag.
func (f *simFlags) enginePriorityFor(data []byte) (bool, error) {
	switch f.enginePriority {
	case enginePriorityOn:
		return true, nil
	case enginePriorityOff:
		return false, nil
	case enginePriorityAuto:
		cfg, err := config.Load(data)
		return err == nil && cfg.LLMDFlavor(), nil
	}
	return false, fmt.Errorf("--engine-priority: %q is not auto, on or off", f.enginePriority)
}

// policy is the config under evaluation.
func (f *simFlags) policy(st *settings) (fleet.Policy, error) {
	if f.configFile == "" {
		name := cmp.Or(f.name, fleet.PolicyOursDefault)
		return fleet.ConfigPolicy(name, "the upstream default config run through OpenEPP's plugins", []byte(config.DefaultText), st.plugins...), nil
	}
	p, err := configFilePolicy(f.configFile, f.name, st)
	if err != nil {
		return fleet.Policy{}, fmt.Errorf("--config: %w", err)
	}
	return p, nil
}

// configFilePolicy loads the EndpointPickerConfig at path as a policy
// called name, or by the file's name without its extension.
func configFilePolicy(path, name string, st *settings) (fleet.Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return fleet.Policy{}, err
	}
	if _, err := config.Load(data); err != nil {
		return fleet.Policy{}, fmt.Errorf("%s: %w", path, err)
	}
	base := filepath.Base(path)
	name = cmp.Or(name, strings.TrimSuffix(base, filepath.Ext(base)))
	return fleet.ConfigPolicy(name, "config file "+path, data, st.plugins...), nil
}

// baselinePolicies turns --compare into the policies run beside the
// evaluated one (called evaluated, which is left out if named): standard
// policies by name, and config files (a path ending in .yaml, .yml or
// .json) by their file names, so two configs can be compared seed by seed.
func (f *simFlags) baselinePolicies(st *settings, evaluated string) ([]fleet.Policy, error) {
	var out []fleet.Policy
	seen := map[string]string{evaluated: "the evaluated config"}
	for _, item := range splitList(f.compare) {
		var p fleet.Policy
		switch strings.ToLower(filepath.Ext(item)) {
		case ".yaml", ".yml", ".json":
			var err error
			if p, err = configFilePolicy(item, "", st); err != nil {
				return nil, fmt.Errorf("--compare: %w", err)
			}
			if other, dup := seen[p.Name]; dup {
				return nil, fmt.Errorf("--compare: %s would be called %q, as %s is; rename the file", item, p.Name, other)
			}
		default:
			sel, err := fleet.SelectPolicies(baselines(), []string{item})
			if err != nil {
				return nil, fmt.Errorf("--compare: %w (or a config file ending in .yaml, .yml or .json)", err)
			}
			if p = sel[0]; p.Name == evaluated {
				continue
			}
			if _, dup := seen[p.Name]; dup {
				continue
			}
		}
		seen[p.Name] = item
		out = append(out, p)
	}
	return out, nil
}

// write saves the report under --out.
func (f *simFlags) write(rep *fleet.Report) error {
	if f.out == "" {
		return nil
	}
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	b, err := rep.JSON()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(f.out, "simulate.json"), b, 0o644); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	var md strings.Builder
	if err := fleet.Markdown(&md, rep, ""); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(f.out, "simulate.md"), []byte(md.String()), 0o644); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	return nil
}

func listWorkloads(w io.Writer) error {
	// The P/D study's and the multimodal one are not in the fleet report's matrix.
	for _, wl := range append(fleet.Workloads(), fleet.LongPromptWorkload(), fleet.MultimodalWorkload(), fleet.MultimodalColdWorkload(), fleet.FanOutWorkload()) {
		if _, err := fmt.Fprintf(w, "%-14s %s  %s\n    published: %s\n    simulated: %s\n", wl.Name, wl.ID, wl.Description, wl.Published, wl.Scaling); err != nil {
			return err
		}
	}
	return nil
}

// parseQPS reads a comma-separated list of positive rates.
func parseQPS(s string) ([]float64, error) {
	var out []float64
	for _, part := range splitList(s) {
		v, err := strconv.ParseFloat(part, 64)
		if err != nil || !(v > 0) {
			return nil, fmt.Errorf("%q is not a positive number", part)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, errors.New("no stages given")
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// baselines are the standard policies --compare may name: all but
// ours-best, whose config lives in the repository, not in the binary.
func baselines() []fleet.Policy {
	var out []fleet.Policy
	for _, p := range fleet.StandardPolicies(nil) {
		if p.Name != fleet.PolicyOursBest {
			out = append(out, p)
		}
	}
	return out
}
