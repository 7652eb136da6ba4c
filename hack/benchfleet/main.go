// Command benchfleet runs the routing-quality fleet simulation (`make
// bench-fleet`): every workload × policy × QPS stage × seed in virtual time,
// then writes fleet.json, fleet.md and the QPS plots into --out, and copies
// fleet.md and the plots into --docs for the benchmark report. --from
// re-renders an earlier fleet.json; with --rerun, the named studies are
// measured again on top of it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/openepp/openepp/hack/benchoverhead/overhead"
	"github.com/openepp/openepp/pkg/fleet"
	"github.com/openepp/openepp/pkg/fleet/fleetplot"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchfleet:", err)
		os.Exit(1)
	}
}

type options struct {
	out, docs, best, agents, llmd, precise, multimodal, workloads, policies, from, freshness, priorities, fairness, ordering, disagg string
	rerun, fromCommit                                                                                                                string
	seeds, freshnessSeeds, workers                                                                                                   int
	quick                                                                                                                            bool
}

// parse reads the command line.
func parse(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("benchfleet", flag.ContinueOnError)
	fs.StringVar(&o.out, "out", "bench/results/fleet", "results directory (created)")
	fs.StringVar(&o.docs, "docs", "docs/benchmarks", "where fleet.md and the plots are copied for the report (empty: no copy)")
	fs.StringVar(&o.best, "best", "config/openepp-recommended.yaml", "OpenEPP's recommended config (the ours-best policy)")
	fs.StringVar(&o.agents, "agents", "config/agents.yaml", "OpenEPP's config for pools serving long agent prompts (the "+agentsPolicy+" policy; empty: not run)")
	fs.StringVar(&o.precise, "precise", "config/precise-prefix-cache.yaml", "precise prefix-cache config, run in the replica study as one EPP and as three replicas without and with replica sync (empty: not run)")
	fs.StringVar(&o.multimodal, "multimodal", "config/multimodal-affinity.yaml", "encoder-cache affinity config, run in the multimodal study against "+
		fleet.PolicyOursDefault+" and round-robin on the "+fleet.MultimodalWorkload().Name+" workload (empty: not run)")
	fs.StringVar(&o.llmd, "llmd", "config/llm-d-optimized-baseline.yaml", "llm-d's optimized-baseline config (the "+fleet.PolicyLLMDBaseline+" policy; empty: not run)")
	fs.StringVar(&o.workloads, "workloads", "", "comma-separated workloads (default: all)")
	fs.StringVar(&o.policies, "policies", "", "comma-separated policies (default: all standard ones)")
	fs.IntVar(&o.seeds, "seeds", 3, "seeds per stage (results are averaged)")
	fs.StringVar(&o.freshness, "freshness", "25ms,100ms,200ms", "scrape intervals whose effect on "+freshnessPolicy+" is measured against 50ms (empty: no study)")
	fs.IntVar(&o.freshnessSeeds, "freshness-seeds", 6, "paired seeds of the freshness study")
	fs.StringVar(&o.priorities, "priorities", fleet.DefaultPriorityClasses, "traffic classes (name:share:priority,…) of the priority study on "+
		priorityWorkload+", run when that workload is (empty: no study)")
	fs.StringVar(&o.fairness, "fairness", fleet.DefaultFairnessClasses, "traffic classes of the fairness study (flows of one band) on "+
		priorityWorkload+", run when that workload is (empty: no study)")
	fs.StringVar(&o.ordering, "ordering", fleet.DefaultOrderingClasses, "traffic classes of the ordering study (flows of one band with "+
		"their TTFT objectives, name:share:priority:objective) on "+priorityWorkload+", run when that workload is (empty: no study)")
	fs.StringVar(&o.disagg, "disagg", strings.Join(disaggWorkloads, ","), "workloads of the P/D study (aggregated against "+
		"prefill/decode disaggregation at equal server count), each run when the matrix runs it (empty: no study)")
	fs.IntVar(&o.workers, "workers", 0, "parallel runs (default GOMAXPROCS)")
	fs.BoolVar(&o.quick, "quick", false, "tiny stages (smoke run: checks that everything runs, results are not meaningful)")
	fs.StringVar(&o.from, "from", "", "re-render the report, checks included, from an earlier fleet.json instead of running")
	fs.StringVar(&o.rerun, "rerun", "", "with --from: comma-separated studies ("+strings.Join(studyNames, ", ")+
		") to run again, replacing only their results in the --from report (the report says which commit measured what)")
	fs.StringVar(&o.fromCommit, "from-commit", "", "with --rerun: the commit the --from report was measured at, when it does not record one")
	err := fs.Parse(args)
	return o, err
}

func run(ctx context.Context, args []string) error {
	o, err := parse(args)
	if err != nil {
		return err
	}
	if o.from != "" && o.rerun == "" {
		if o.fromCommit != "" {
			return fmt.Errorf("--from-commit: only with --rerun")
		}
		rep, err := load(o.from)
		if err != nil {
			return err
		}
		return o.write(rep)
	}
	m, err := o.matrix()
	if err != nil {
		return err
	}
	start := time.Now()
	m.Progress = func(done, total int, spec fleet.RunSpec, r *fleet.StageResult) {
		fmt.Fprintf(os.Stderr, "\r[%4d/%4d] %6.0fs %-14s %-17s %7g QPS seed %d: %8.0f tok/s, TTFT p90 %8.0f ms   ",
			done, total, time.Since(start).Seconds(), spec.Workload.Name, spec.Policy.Name, spec.QPS, spec.Seed, r.OutputTokensPerS, r.TTFT.P90)
	}
	studies, err := o.studies(m)
	if err != nil {
		return err
	}
	if o.rerun != "" {
		return o.rerunStudies(ctx, m, studies)
	}
	rep, err := m.Run(ctx)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return err
	}
	rep.Commit = overhead.GitCommit()
	for _, st := range studies {
		if err := st.run(ctx, rep); err != nil {
			return err
		}
		fmt.Fprintln(os.Stderr)
	}
	rep.Checks = fleet.Checks(rep) // some studies have checks of their own
	return o.write(rep)
}

// freshnessPolicy is the policy whose sensitivity to stale metrics is
// studied: the EPP's default.
const freshnessPolicy = fleet.PolicyOursDefault

// freshnessStudy prepares the freshness study over the matrix's
// workloads, reporting progress as it does, or returns nil when
// --freshness is empty.
func (o *options) freshnessStudy(m *fleet.Matrix) (*fleet.Freshness, error) {
	if o.freshness == "" {
		return nil, nil
	}
	f := &fleet.Freshness{Workloads: m.Workloads, Workers: o.workers, Progress: m.Progress}
	intervals, err := fleet.ParseIntervals(o.freshness, fleet.DefaultScrapeInterval)
	if err != nil {
		return nil, fmt.Errorf("--freshness: %w", err)
	}
	f.Intervals = intervals
	if o.freshnessSeeds < 1 || o.freshnessSeeds > 100 {
		return nil, fmt.Errorf("--freshness-seeds: must be in [1, 100], got %d", o.freshnessSeeds)
	}
	for i := range o.freshnessSeeds {
		f.Seeds = append(f.Seeds, uint64(i+1))
	}
	policies, err := fleet.SelectPolicies(fleet.StandardPolicies(nil), []string{freshnessPolicy})
	if err != nil {
		return nil, err
	}
	f.Policy = policies[0]
	return f, nil
}

// priorityWorkload is where the priority, fairness and ordering studies run:
// cache-aware routing matters there, and its ladder goes well past
// capacity.
const priorityWorkload = "shared-prefix"

// classStudy prepares a study of traffic classes (flag's value, spec) under
// arms on the matrix's copy of priorityWorkload (so --quick shrinks it
// too) with the matrix's seeds, or returns nil when spec is empty or the
// workload is not run.
func classStudy(m *fleet.Matrix, workers int, flag, spec string, arms []fleet.ClassArm) (func(context.Context) (*fleet.PriorityReport, error), error) {
	if spec == "" {
		return nil, nil
	}
	classes, err := fleet.ParseClasses(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	for _, w := range m.Workloads {
		if w.Name == priorityWorkload {
			return func(ctx context.Context) (*fleet.PriorityReport, error) {
				st := fleet.ClassStudy{Workload: w, Classes: classes, Arms: arms, Seeds: m.Seeds, Workers: workers, Progress: m.Progress}
				return st.Run(ctx)
			}, nil
		}
	}
	return nil, nil
}

// replicaWorkloads are where the replica study runs: shared prefixes,
// where the prefix index matters, and multi-turn chat near saturation,
// where the replicas' partial views of the load matter too.
var replicaWorkloads = []string{"shared-prefix", "multi-turn"}

// replicaStudy prepares the study of active-active EPP replicas, with and
// without replica sync: the EPP's default config on the matrix's copies of
// replicaWorkloads, or nil when the matrix runs neither the policy nor any
// of them.
func replicaStudy(m *fleet.Matrix, workers int) *fleet.ReplicaStudy {
	i := slices.IndexFunc(m.Policies, func(p fleet.Policy) bool { return p.Name == fleet.PolicyOursDefault })
	if i < 0 {
		return nil
	}
	st := &fleet.ReplicaStudy{Policy: m.Policies[i], Seeds: m.Seeds, Workers: workers, Progress: m.Progress}
	for _, w := range m.Workloads {
		if slices.Contains(replicaWorkloads, w.Name) {
			st.Workloads = append(st.Workloads, w)
		}
	}
	if len(st.Workloads) == 0 {
		return nil
	}
	return st
}

// disaggWorkloads are where the P/D study runs by default: the P/D guide's
// unique long prompts, where P/D is meant to pay, long shared agentic
// prompts, and shared prefixes.
var disaggWorkloads = []string{fleet.LongPromptWorkload().Name, "agentic", "shared-prefix"}

// disaggStudy prepares the P/D study on the --disagg workloads, with the
// matrix's seeds, or returns nil when there are none. A catalogue workload
// runs as the matrix's copy when the matrix runs it (so --quick shrinks it
// too); the study's own long-prompt workload always runs.
func (o *options) disaggStudy(m *fleet.Matrix) (*fleet.Disaggregation, error) {
	d := &fleet.Disaggregation{Arms: fleet.DisaggArms(), Seeds: m.Seeds, Workers: o.workers, Progress: m.Progress}
	for _, n := range split(o.disagg) {
		if lp := fleet.LongPromptWorkload(); n == lp.Name {
			if o.quick {
				lp = fleet.Quick(lp)
			}
			d.Workloads = append(d.Workloads, lp)
			continue
		}
		w, err := fleet.WorkloadByName(n)
		if err != nil {
			return nil, fmt.Errorf("--disagg: %w (or %q, the study's own)", err, fleet.LongPromptWorkload().Name)
		}
		for _, mw := range m.Workloads {
			if mw.Name == w.Name {
				d.Workloads = append(d.Workloads, mw)
			}
		}
	}
	if len(d.Workloads) == 0 {
		return nil, nil
	}
	return d, nil
}

// multimodalStudy prepares the multimodal study (fleet.MultimodalWorkload,
// shrunk by --quick, with the matrix's seeds) of the --multimodal config,
// or returns nil when --multimodal is empty.
func (o *options) multimodalStudy(m *fleet.Matrix) (*fleet.MultimodalStudy, error) {
	if o.multimodal == "" {
		return nil, nil
	}
	yaml, err := os.ReadFile(o.multimodal)
	if err != nil {
		return nil, fmt.Errorf("--multimodal: %w", err)
	}
	w := fleet.MultimodalWorkload()
	if o.quick {
		w = fleet.Quick(w)
	}
	return &fleet.MultimodalStudy{Workload: &w, Policies: fleet.MultimodalPolicies(yaml), Seeds: m.Seeds,
		Workers: o.workers, Progress: m.Progress}, nil
}

// agentsPolicy names the run of config/agents.yaml, which is not one of
// the standard policies: it is for one kind of pool.
const agentsPolicy = "ours-agents"

// matrix builds the runs from the options.
func (o *options) matrix() (*fleet.Matrix, error) {
	best, err := os.ReadFile(o.best)
	if err != nil {
		return nil, fmt.Errorf("--best: %w", err)
	}
	policies := fleet.StandardPolicies(best)
	if o.agents != "" {
		agents, err := os.ReadFile(o.agents)
		if err != nil {
			return nil, fmt.Errorf("--agents: %w", err)
		}
		policies = append(policies, fleet.ConfigPolicy(agentsPolicy, "OpenEPP's config for pools serving long agent prompts (config/agents.yaml: the default profile plus token-load-scorer and prefill-backlog-scorer)", agents))
	}
	if o.llmd != "" {
		llmd, err := os.ReadFile(o.llmd)
		if err != nil {
			return nil, fmt.Errorf("--llmd: %w", err)
		}
		policies = append(policies, fleet.ConfigPolicy(fleet.PolicyLLMDBaseline, "llm-d's optimized-baseline config "+
			"(config/llm-d-optimized-baseline.yaml: prefix-cache-affinity-filter, then token-load-scorer on inflight-load-producer's tokens) "+
			"run through OpenEPP's implementation of those plugins, from their documented behaviour", llmd))
	}
	if o.policies != "" {
		if policies, err = fleet.SelectPolicies(policies, split(o.policies)); err != nil {
			return nil, err
		}
	}
	workloads := fleet.Workloads()
	if o.workloads != "" {
		workloads = nil
		for _, n := range split(o.workloads) {
			w, err := fleet.WorkloadByName(n)
			if err != nil {
				return nil, err
			}
			workloads = append(workloads, w)
		}
	}
	if o.quick {
		for i := range workloads {
			workloads[i] = fleet.Quick(workloads[i])
		}
	}
	if o.seeds < 1 || o.seeds > 100 {
		return nil, fmt.Errorf("--seeds: must be in [1, 100], got %d", o.seeds)
	}
	seeds := make([]uint64, o.seeds)
	for i := range seeds {
		seeds[i] = uint64(i + 1)
	}
	return &fleet.Matrix{Workloads: workloads, Policies: policies, Seeds: seeds, Workers: o.workers}, nil
}

// write saves the results and copies the report inputs.
func (o *options) write(rep *fleet.Report) error {
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	js, err := rep.JSON()
	if err != nil {
		return err
	}
	var md strings.Builder
	if err := fleet.Markdown(&md, rep, ""); err != nil {
		return err
	}
	files := map[string][]byte{"fleet.json": js, "fleet.md": []byte(md.String())}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(o.out, name), b, 0o644); err != nil {
			return err
		}
	}
	plots, err := fleetplot.Write(rep, o.out)
	if err != nil {
		return err
	}
	if err := fleet.WriteTable(os.Stdout, rep); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s, %s and %d plots in %.0f s\n", filepath.Join(o.out, "fleet.json"), filepath.Join(o.out, "fleet.md"), len(plots), rep.WallSeconds)
	if o.docs == "" {
		return nil
	}
	return copyInto(o.docs, append([]string{filepath.Join(o.out, "fleet.md")}, plots...))
}

// load reads a report written earlier and recomputes its checks.
func load(path string) (*fleet.Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	var rep fleet.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("--from %s: %w", path, err)
	}
	if rep.Version != fleet.ReportVersion {
		return nil, fmt.Errorf("--from %s: report version %d, want %d", path, rep.Version, fleet.ReportVersion)
	}
	rep.Checks = fleet.Checks(&rep)
	return &rep, nil
}

func copyInto(dir string, files []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("copied fleet.md and the plots into %s\n", dir)
	return nil
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
