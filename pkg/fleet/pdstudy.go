package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/disagg"
)

// The P/D study: at equal server count, aggregated serving (every server
// prefills and decodes) against llm-d style prefill/decode disaggregation
// with some servers prefilling, up each workload's QPS ladder, on every
// `make bench-fleet`. It says where splitting the fleet pays and where it
// costs, in this model.

// pdMaxPrefillQueue is config/pd.yaml's maxPrefillQueue.
const pdMaxPrefillQueue = 2

// pdConfigText is config/pd.yaml (without its comments) with decider, of
// parameters params (flow-style YAML, "" for none), deciding the prefill,
// and the handler's maxPrefillQueue (0: llm-d's load-blind handler).
func pdConfigText(decider, params string, maxPrefillQueue int) string {
	entry := "- type: " + decider + "\n"
	if params != "" {
		entry += "  parameters: " + params + "\n"
	}
	queue := ""
	if maxPrefillQueue > 0 {
		queue = fmt.Sprintf("    maxPrefillQueue: %d\n", maxPrefillQueue)
	}
	return `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: disagg-profile-handler
  parameters:
` + queue + `    deciders:
      prefill: ` + decider + "\n" + entry + `- type: decode-filter
- type: prefill-filter
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
schedulingProfiles:
- name: decode
  plugins:
  - pluginRef: decode-filter
  - pluginRef: queue-scorer
    weight: 2
  - pluginRef: kv-cache-utilization-scorer
    weight: 2
  - pluginRef: prefix-cache-scorer
    weight: 3
- name: prefill
  plugins:
  - pluginRef: prefill-filter
  - pluginRef: queue-scorer
    weight: 2
  - pluginRef: prefix-cache-scorer
    weight: 3
`
}

// DisaggArm is one way the study runs the fleet: a policy, and how many of
// the servers are prefill servers (RunSpec.PrefillServers).
type DisaggArm struct {
	Policy         Policy
	PrefillServers int
}

// Names of the P/D study's arms.
const (
	ArmAggregated = "aggregated"
	ArmPD2        = "pd-2p"
	ArmPD2Blind   = "pd-2p-load-blind"
	ArmPD2Always  = "pd-2p-always"
	ArmPD4        = "pd-4p"
	ArmPD6        = "pd-6p"
)

// DisaggArms are the study's arms on an 8-server fleet: aggregated with
// upstream's default scoring, and config/pd.yaml with 2, 4 and 6 prefill
// servers and with the always decider on 2.
func DisaggArms() []DisaggArm {
	prefix := pdConfigText(disagg.PrefixDeciderType, "{nonCachedTokens: 256}", pdMaxPrefillQueue)
	blind := pdConfigText(disagg.PrefixDeciderType, "{nonCachedTokens: 256}", 0)
	always := pdConfigText(disagg.AlwaysDeciderType, "", pdMaxPrefillQueue)
	pd := func(name, desc, cfg string, k int) DisaggArm {
		return DisaggArm{Policy: ConfigPolicy(name, desc, []byte(cfg)), PrefillServers: k}
	}
	return []DisaggArm{
		{Policy: ConfigPolicy(ArmAggregated, "no roles: every server prefills and decodes, upstream's default config (ours-default)",
			[]byte(config.DefaultText))},
		pd(ArmPD2, "2 prefill + 6 decode servers, config/pd.yaml (prefix-based-pd-decider, nonCachedTokens 256, maxPrefillQueue 2)", prefix, 2),
		pd(ArmPD2Blind, "2 prefill + 6 decode servers, config/pd.yaml without maxPrefillQueue: llm-d's handler, blind to the prefill servers' load", blind, 2),
		pd(ArmPD2Always, "2 prefill + 6 decode servers, config/pd.yaml with always-disagg-pd-decider", always, 2),
		pd(ArmPD4, "4 prefill + 4 decode servers, config/pd.yaml", prefix, 4),
		pd(ArmPD6, "6 prefill + 2 decode servers, config/pd.yaml", prefix, 6),
	}
}

// LongPromptWorkload is the P/D study's own workload, the traffic of
// llm-d's P/D guide: unique prompts, nothing shared, where disaggregation
// is meant to pay. It is not in Workloads: routing policies have nothing to
// tell apart on it.
func LongPromptWorkload() Workload {
	return Workload{
		Name: "long-prompt", ID: "PD",
		Description: "unique long prompts (the llm-d P/D guide's random data): 5,000 tokens in, 250 out, nothing shared",
		Published: "llm-d P/D guide: gpt-oss-120b on 16 × H200, random 5,000 / 250 tokens at 45 QPS; P/D against 16 × TP1 " +
			"aggregated: ITL mean 25 → 4.9 ms, e2e mean −59 %, TTFT mean +117 %",
		Scaling: "unscaled tokens on 8 × Qwen3-32B TP2 (the profile's full KV cache); ladder 4 → 28 QPS around the aggregated " +
			"knee; objectives as W1 and W7 before scaling: TTFT 2 s, ITL 50 ms",
		Profile: "qwen32b-tp2", Servers: 8,
		Traffic: Traffic{Shape: ShapeShareGPT, Input: LogNormal{Median: 5000, Mean: 5000, Max: 5000},
			Output: LogNormal{Median: 250, Mean: 250, Max: 250}},
		Ladder: []float64{4, 8, 12, 16, 20, 24, 28}, Duration: 30 * time.Second, WarmupRequests: 100,
		SLO: SLO{TTFT: 2 * time.Second, ITL: 50 * time.Millisecond},
	}
}

// Disaggregation is the P/D study: every arm on every workload's ladder,
// for Seeds (default {1}, extended to each workload's MinSeeds).
type Disaggregation struct {
	Workloads []Workload
	Arms      []DisaggArm
	Seeds     []uint64
	Workers   int
	// Progress is as Matrix.Progress.
	Progress func(done, total int, spec RunSpec, res *StageResult)
}

// DisaggReport is the P/D study's outcome: each workload with one ladder
// per arm, in arm order.
type DisaggReport struct {
	Arms      []DisaggArmReport `json:"arms"`
	Workloads []WorkloadReport  `json:"workloads"`
	// KVTransfer is each workload's price of a KV pull (its engine
	// profile's), by workload name.
	KVTransfer  map[string]KVTransferPrice `json:"kvTransfer"`
	WallSeconds float64                    `json:"wallSeconds"`
}

// KVTransferPrice is what a decode server's KV pull costs: a fixed
// overhead plus a time per pulled token.
type KVTransferPrice struct {
	OverheadMs float64 `json:"overheadMs"`
	PerTokenUs float64 `json:"perTokenUs"`
}

// DisaggArmReport describes one arm.
type DisaggArmReport struct {
	Name           string `json:"name"`
	Description    string `json:"description"`
	PrefillServers int    `json:"prefillServers"`
}

// Run executes every run on Workers goroutines.
func (d *Disaggregation) Run(ctx context.Context) (*DisaggReport, error) {
	m := &Matrix{Workloads: d.Workloads, Seeds: d.Seeds, Workers: d.Workers, Progress: d.Progress}
	for _, a := range d.Arms {
		m.Policies = append(m.Policies, a.Policy)
	}
	if err := errors.Join(m.validate(), d.validate()); err != nil {
		return nil, fmt.Errorf("p/d study: %w", err)
	}
	start := time.Now()
	var specs []RunSpec
	for _, w := range d.Workloads {
		for _, a := range d.Arms {
			at := len(specs)
			specs = m.ladderSpecs(specs, w, a.Policy)
			for i := at; i < len(specs); i++ {
				specs[i].PrefillServers = a.PrefillServers
			}
		}
	}
	results := make([]*StageResult, len(specs))
	if err := m.execute(ctx, specs, results); err != nil {
		return nil, fmt.Errorf("p/d study: %w", err)
	}
	rep := &DisaggReport{KVTransfer: map[string]KVTransferPrice{}}
	for _, a := range d.Arms {
		rep.Arms = append(rep.Arms, DisaggArmReport{Name: a.Policy.Name, Description: a.Policy.Description, PrefillServers: a.PrefillServers})
	}
	next := 0
	for _, w := range d.Workloads {
		nSeeds := len(m.seedsFor(w))
		wr := newWorkloadReport(w)
		wr.Seeds = nSeeds
		if cfg, err := EngineConfig(w); err == nil {
			rep.KVTransfer[w.Name] = KVTransferPrice{OverheadMs: ms(cfg.KVTransferOverhead),
				PerTokenUs: float64(cfg.KVTransferPerToken) / float64(time.Microsecond)}
		}
		for _, a := range d.Arms {
			n := nSeeds * len(w.Ladder)
			wr.Policies = append(wr.Policies, ladderOf(a.Policy.Name, results[next:next+n], nSeeds))
			next += n
		}
		rep.Workloads = append(rep.Workloads, wr)
	}
	rep.WallSeconds = round3(time.Since(start).Seconds())
	return rep, nil
}

// validate checks each arm's prefill servers against each workload.
func (d *Disaggregation) validate() error {
	var errs []error
	for _, a := range d.Arms {
		for _, w := range d.Workloads {
			if a.PrefillServers < 0 || a.PrefillServers >= w.Servers {
				errs = append(errs, fmt.Errorf("arm %q: %d prefill servers on %q's %d servers: must be in [0, %d)",
					a.Policy.Name, a.PrefillServers, w.Name, w.Servers, w.Servers))
			}
		}
	}
	return errors.Join(errs...)
}

// disaggNotes say what the P/D model captures and what it leaves out.
var disaggNotes = []string{
	"A disaggregated request runs as llm-d's decode sidecar runs it: a prefill-only copy (max_tokens 1) on the prefill " +
		"server the EPP named in `x-prefiller-host-port`, then the request on its decode server, which pulls the prompt's KV " +
		"beyond its own prefix-cache hit and computes only the last prompt token. TTFT runs from arrival to the decode " +
		"server's first token; the EPP's response hooks see only the decode server, as live.",
	"The KV pull costs the engine profile's price (overhead + uncached tokens × per-token time, given with each workload) " +
		"and runs beside the decode server's batch. There is no network: pulls never contend for bandwidth however many run " +
		"at once. The presets' 1 µs/token is optimistic for Qwen3-32B's 256 KiB of KV per token (a few µs/token over 400 Gb/s NICs), but " +
		"even 5 µs/token would add only 25 ms to a 5,000-token pull.",
	"The prefill server frees the prompt's blocks (they stay in its prefix cache) as soon as its prefill ends; a real " +
		"NIXL producer holds them until the decoder has pulled them, so real prefill servers have less room than here.",
	"A prefill not done after " + DefaultPrefillTimeout.String() + " (the sidecar's prefill timeout), or refused, is dropped and the decode server prefills " +
		"locally (the sidecar's fallback); a client timeout cancels whichever phase runs. No sidecar or HTTP latency.",
	"Published shapes to compare with: llm-d's P/D guide (the `long-prompt` traffic) cut ITL 5× and e2e latency by 59 % " +
		"while TTFT doubled; BLIS found the prefix-based decider's fixed threshold can inflate TTFT up to 20× on traffic " +
		"with long shared prefixes.",
	"Every server keeps the GPU and KV cache it has in the aggregated fleet, so K prefill servers hold K/8 of the fleet's " +
		"cache: splitting the fleet also splits the prefix-cache capacity, which long shared prefixes need. " +
		"Cache hit % counts a disaggregated request's hit on its prefill server. Work share counts uncached prompt tokens " +
		"on prefill servers against output tokens on decode servers, not GPU time.",
}

// writeDisagg renders the study as a section of the fleet report.
func writeDisagg(b *strings.Builder, d *DisaggReport) {
	if d == nil || len(d.Workloads) == 0 {
		return
	}
	fmt.Fprintf(b, "### Prefill/decode disaggregation at equal server count\n\n")
	fmt.Fprintf(b, "Each workload's fleet served aggregated and split into prefill and decode servers (llm-d's "+
		"`llm-d.ai/role` labels, `disagg-profile-handler` with role filters), up its QPS ladder (%.0f s). "+
		"TPOT is a request's mean inter-token latency; goodput is the share of requests meeting the workload's TTFT and "+
		"ITL objectives; \"disagg.\" is the share of requests the EPP sent with a prefill server (falling back to a local "+
		"prefill in brackets, when any did).\n\n", d.WallSeconds)
	for _, a := range d.Arms {
		fmt.Fprintf(b, "- `%s`: %s\n", a.Name, a.Description)
	}
	b.WriteString("\nWhat the model does and does not capture:\n\n")
	for _, n := range disaggNotes {
		fmt.Fprintf(b, "- %s\n", n)
	}
	b.WriteString("\n")
	for i := range d.Workloads {
		writeDisaggWorkload(b, &d.Workloads[i], d.KVTransfer)
	}
}

// writeDisaggWorkload writes one workload's summary and ladders.
func writeDisaggWorkload(b *strings.Builder, w *WorkloadReport, prices map[string]KVTransferPrice) {
	k := w.KneeStage()
	ref := w.Policies[0]
	pull := ""
	if kv, ok := prices[w.Name]; ok {
		pull = fmt.Sprintf("KV pull %g ms + %g µs/token; ", kv.OverheadMs, kv.PerTokenUs)
	}
	fmt.Fprintf(b, "**%s (%s)**, %d seeds; %sknee (where `%s` first completes under 90 %% of the offered requests/s) at %g QPS\n\n",
		w.Name, w.ID, w.Seeds, pull, ref.Policy, stageQPS(w, k))
	b.WriteString("| arm | peak out tok/s | × aggregated | peak goodput req/s | × aggregated | TTFT p90 at knee | TPOT p90 at knee | " +
		"cache hit (knee) | disagg. (knee) | prefill share of work (knee) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	refTok, refGood := ref.Peak().OutputTokensPerS, peakGoodput(&ref)
	for _, l := range w.Policies {
		knee := l.Stages[min(k, len(l.Stages)-1)]
		fmt.Fprintf(b, "| `%s` | %.0f | %s | %.2f | %s | %s | %.1f ms | %.1f %% | %s | %s |\n", l.Policy,
			l.Peak().OutputTokensPerS, times(l.Peak().OutputTokensPerS, refTok), peakGoodput(&l), times(peakGoodput(&l), refGood),
			secs(knee.TTFT.P90), knee.TPOT.P90, knee.CacheHitPct, disaggShare(knee), prefillShare(knee))
	}
	b.WriteString("\n")
	ladderTable(b, w, "TTFT p50 / p90", func(s StageResult) string { return secs(s.TTFT.P50) + " / " + secs(s.TTFT.P90) })
	ladderTable(b, w, "TPOT p50 / p90 (ms)", func(s StageResult) string { return fmt.Sprintf("%.1f / %.1f", s.TPOT.P50, s.TPOT.P90) })
	ladderTable(b, w, "output tok/s", func(s StageResult) string { return fmt.Sprintf("%.0f", s.OutputTokensPerS) })
	ladderTable(b, w, "goodput %", func(s StageResult) string { return fmt.Sprintf("%.1f", s.GoodputPct) })
	ladderTable(b, w, "disagg. (KV pulled, tok/s)", func(s StageResult) string {
		if s.Disagg == nil {
			return "—"
		}
		return fmt.Sprintf("%s (%.0f)", disaggShare(s), s.Disagg.KVTransferTokensPerS)
	})
}

// peakGoodput is the ladder's highest goodput in requests per second.
func peakGoodput(l *PolicyLadder) float64 {
	best := 0.0
	for _, s := range l.Stages {
		best = max(best, s.GoodputRPS)
	}
	return best
}

// times formats v / ref as a multiple, "—" without a reference.
func times(v, ref float64) string {
	if ref <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", v/ref)
}

// disaggShare is a stage's disaggregated share, with its fallbacks.
func disaggShare(s StageResult) string {
	switch {
	case s.Disagg == nil:
		return "—"
	case s.Disagg.FallbackPct > 0:
		return fmt.Sprintf("%.1f %% (%.1f %%)", s.Disagg.DisaggregatedPct, s.Disagg.FallbackPct)
	default:
		return fmt.Sprintf("%.1f %%", s.Disagg.DisaggregatedPct)
	}
}

func prefillShare(s StageResult) string {
	if s.Disagg == nil || s.Disagg.PrefillServers == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f %%", s.Disagg.PrefillWorkPct)
}
