package fleet

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// The multimodal study: the multimodal workload's ladder (MultimodalWorkload,
// not in Workloads) under OpenEPP's default config, round-robin and an
// encoder-cache affinity config (config/multimodal-affinity.yaml, llm-d's
// mm-embeddings-cache plugins). It says what routing requests to the servers
// that already encoded their images wins, in this model.

// PolicyMultimodal names the study's run of the encoder-cache affinity
// config.
const PolicyMultimodal = "multimodal-affinity"

// multimodalSeeds is how many seeds the study runs when given none.
const multimodalSeeds = 3

// MultimodalPolicies are the study's policies: ours-default (the
// reference), round-robin, and yaml (e.g. config/multimodal-affinity.yaml)
// as PolicyMultimodal, last.
func MultimodalPolicies(yaml []byte) []Policy {
	rr, _ := Builtin(PolicyRoundRobin)
	ours, _ := SelectPolicies(StandardPolicies(nil), []string{PolicyOursDefault})
	return []Policy{ours[0], rr, ConfigPolicy(PolicyMultimodal, "encoder-cache affinity (config/multimodal-affinity.yaml: "+
		"the default profile plus llm-d's mm-embeddings-cache-producer and mm-embeddings-cache-scorer, weight 3)", yaml)}
}

// MultimodalStudy runs every policy up the workload's ladder.
type MultimodalStudy struct {
	// Workload defaults to MultimodalWorkload().
	Workload *Workload
	// Policies: the first is the reference, the last the config studied
	// (MultimodalPolicies).
	Policies []Policy
	// Seeds defaults to 1…3, extended to the workload's MinSeeds.
	Seeds   []uint64
	Workers int
	// Progress is as Matrix.Progress.
	Progress func(done, total int, spec RunSpec, res *StageResult)
}

// MultimodalReport is the study's outcome: the workload with one ladder per
// policy, in policy order.
type MultimodalReport struct {
	// Reference and Config name the ladders the findings compare.
	Reference   string            `json:"reference"`
	Config      string            `json:"config"`
	Policies    map[string]string `json:"policies"`
	Workload    WorkloadReport    `json:"workload"`
	WallSeconds float64           `json:"wallSeconds"`
}

// Run executes every run on Workers goroutines.
func (st *MultimodalStudy) Run(ctx context.Context) (*MultimodalReport, error) {
	w := MultimodalWorkload()
	if st.Workload != nil {
		w = *st.Workload
	}
	seeds := st.Seeds
	if len(seeds) == 0 {
		for i := range multimodalSeeds {
			seeds = append(seeds, uint64(i+1))
		}
	}
	m := &Matrix{Workloads: []Workload{w}, Policies: st.Policies, Seeds: seeds, Workers: st.Workers, Progress: st.Progress}
	err := m.validate()
	if len(st.Policies) < 2 {
		err = errors.Join(err, errors.New("want a reference and a config"))
	}
	if err != nil {
		return nil, fmt.Errorf("multimodal study: %w", err)
	}
	start := time.Now()
	var specs []RunSpec
	for _, p := range st.Policies {
		specs = m.ladderSpecs(specs, w, p)
	}
	results := make([]*StageResult, len(specs))
	if err := m.execute(ctx, specs, results); err != nil {
		return nil, fmt.Errorf("multimodal study: %w", err)
	}
	rep := &MultimodalReport{Reference: st.Policies[0].Name, Config: st.Policies[len(st.Policies)-1].Name,
		Policies: map[string]string{}, Workload: newWorkloadReport(w)}
	nSeeds := len(m.seedsFor(w))
	rep.Workload.Seeds = nSeeds
	for i, p := range st.Policies {
		rep.Policies[p.Name] = p.Description
		n := nSeeds * len(w.Ladder)
		rep.Workload.Policies = append(rep.Workload.Policies, ladderOf(p.Name, results[i*n:(i+1)*n], nSeeds))
	}
	rep.WallSeconds = round3(time.Since(start).Seconds())
	return rep, nil
}

// comparison is the config's ladder against the reference's over every
// stage, ok false when either was not run.
func (r *MultimodalReport) comparison() (comparison, bool) {
	cfg, ref, err := ladderPair(&r.Workload, r.Config, r.Reference)
	if err != nil {
		return comparison{}, false
	}
	return compareLadders(cfg, ref, false), true
}

// checkMultimodal is the study's credibility check, ok false when the study
// was not run: the encoder-cache affinity config beats the reference on
// TTFT p90 over the ladder without losing throughput (goalNotLose's
// tolerance).
func checkMultimodal(r *Report) (Check, bool) {
	mm := r.Multimodal
	if mm == nil {
		return Check{}, false
	}
	c := Check{ID: "multimodal-affinity-vs-default", Kind: "credibility",
		Name: fmt.Sprintf("%s: the %s config beats %s on TTFT p90 over the ladder without losing throughput (TTFT p90 < 1×, throughput ≥ %.2f×, geometric means)",
			mm.Workload.Name, mm.Config, mm.Reference, loseThroughput)}
	cmp, ok := mm.comparison()
	switch {
	case !ok:
		c.Status, c.Detail = Skip, fmt.Sprintf("%s or %s not run", mm.Config, mm.Reference)
	case cmp.stages == 0:
		c.Status, c.Detail = Fail, "no stage to compare"
	default:
		c.Status, c.Detail = verdict(cmp.ttft < 1 && cmp.throughput >= loseThroughput), cmp.String()
	}
	return c, true
}

// writeMultimodal renders the study as a section of the fleet report.
func writeMultimodal(b *strings.Builder, r *MultimodalReport) {
	if r == nil || len(r.Workload.Policies) == 0 {
		return
	}
	w := &r.Workload
	b.WriteString("### Multimodal encoder-cache affinity\n\n")
	fmt.Fprintf(b, "`%s` (%s, a study workload outside the matrix): %s, on %d × %s. %s. Every request's image sits behind "+
		"a preamble of the user's own, so the prefix cache never covers it: only the server's encoder cache saves encoding "+
		"it again. Each policy ran up the ladder (%s QPS), each stage averaged over %d seeds (%.0f s in all). Encoder hit "+
		"is the share of the window's images the servers found in their encoder caches; goodput the share of requests "+
		"meeting the TTFT %s and ITL %.0f ms objectives; load CV the spread of the servers' load (σ/μ).\n\n",
		w.Name, w.ID, w.Description, w.Servers, w.Profile, upperFirst(w.Scaling), ladderString(*w), w.Seeds, r.WallSeconds,
		secs(w.SLO.TTFTMs), w.SLO.ITLMs)
	for _, l := range w.Policies {
		fmt.Fprintf(b, "- `%s`: %s\n", l.Policy, r.Policies[l.Policy])
	}
	b.WriteString("\n| policy | QPS | encoder hit | TTFT p50 | TTFT p90 | out tok/s | goodput | load CV |\n" +
		"|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for i := range w.Policies[0].Stages {
		for _, l := range w.Policies {
			if i >= len(l.Stages) {
				continue
			}
			s := l.Stages[i]
			fmt.Fprintf(b, "| `%s` | %g | %s | %s | %s | %.0f | %.1f %% | %.3f |\n", l.Policy, s.QPS, encoderHit(s),
				secs(s.TTFT.P50), secs(s.TTFT.P90), s.OutputTokensPerS, s.GoodputPct, s.LoadCV)
		}
	}
	b.WriteString("\n" + multimodalFindings(r) + "\n\n")
}

// multimodalFindings says, from the numbers, what the config did against
// the reference over the ladder and at its highest stage, and each
// policy's encoder hit rates.
func multimodalFindings(r *MultimodalReport) string {
	cmp, ok := r.comparison()
	if !ok || cmp.stages == 0 {
		return fmt.Sprintf("No findings: `%s` or `%s` has no stage to compare.", r.Config, r.Reference)
	}
	cfg, _ := r.Workload.Ladder(r.Config)
	ref, _ := r.Workload.Ladder(r.Reference)
	top := min(len(cfg.Stages), len(ref.Stages)) - 1
	c, f := cfg.Stages[top], ref.Stages[top]
	out := fmt.Sprintf("Over the %d stages `%s` against `%s`: throughput %.2f×, TTFT p90 %.2f× (geometric means), "+
		"success %.1f %% against %.1f %%. At %g QPS: output %s, TTFT p90 %s against %s, goodput %s points. Encoder hit over the ladder: ",
		cmp.stages, r.Config, r.Reference, cmp.throughput, cmp.ttft, cmp.successA, cmp.successB, c.QPS,
		pctChange(c.OutputTokensPerS, f.OutputTokensPerS), secs(c.TTFT.P90), secs(f.TTFT.P90), signed(c.GoodputPct-f.GoodputPct))
	var parts []string
	for _, l := range r.Workload.Policies {
		parts = append(parts, fmt.Sprintf("`%s` %s", l.Policy, encoderRange(l)))
	}
	return out + strings.Join(parts, ", ") + "."
}

// encoderHit is a stage's encoder hit rate, "—" without images.
func encoderHit(s StageResult) string {
	if s.Encoder == nil {
		return "—"
	}
	return fmt.Sprintf("%.1f %%", s.Encoder.HitPct)
}

// encoderRange is the lowest and highest encoder hit rate of a ladder's
// stages.
func encoderRange(l PolicyLadder) string {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range l.Stages {
		if s.Encoder != nil {
			lo, hi = min(lo, s.Encoder.HitPct), max(hi, s.Encoder.HitPct)
		}
	}
	switch {
	case math.IsInf(lo, 0):
		return "—"
	case math.Round(lo*10) == math.Round(hi*10):
		return fmt.Sprintf("%.1f %%", lo)
	}
	return fmt.Sprintf("%.1f–%.1f %%", lo, hi)
}

// upperFirst capitalises s's first letter.
func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
