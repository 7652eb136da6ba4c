package fleet

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/openepp/openepp/pkg/sim/engine"
)

// Shape is the kind of traffic a workload generates.
type Shape string

// The traffic shapes.
const (
	// ShapeSharedPrefix is inference-perf's shared_prefix data: Groups ×
	// PromptsPerGroup fixed prompts, each a group's system prompt followed by
	// its own question, drawn uniformly per request (so whole prompts repeat).
	ShapeSharedPrefix Shape = "shared-prefix"
	// ShapeShareGPT is unique prompts with ShareGPT-like log-normal input and
	// output lengths; nothing is shared.
	ShapeShareGPT Shape = "sharegpt"
	// ShapeMultiTurn is inference-perf's enable_multi_turn_chat: Groups ×
	// PromptsPerGroup users, each holding a chat whose history (system
	// prompt, questions and answers) grows by one turn per request.
	ShapeMultiTurn Shape = "multi-turn"
	// ShapeMultimodal is chat with a vision model: one of Groups system
	// prompts, a unique PreambleTokens-token preamble, one of Images images
	// (ImageTokens placeholders, Zipf popularity of exponent ImageSkew) and a
	// unique question (multimodal.go).
	ShapeMultimodal Shape = "multimodal"
)

// Traffic parameterises a Shape. Token counts are exact: generated text of n
// words tokenizes (package tokenize) to n tokens.
type Traffic struct {
	Shape Shape
	// Groups and PromptsPerGroup: shared-prefix groups and prompts (or
	// multi-turn users) per group.
	Groups, PromptsPerGroup int
	// SystemTokens, QuestionTokens, OutputTokens: shared-prefix and
	// multi-turn lengths; OutputTokens is also a multi-turn answer's length.
	SystemTokens, QuestionTokens, OutputTokens int
	// Input and Output are ShareGPT-like length distributions.
	Input, Output LogNormal
	// Turns is how many turns a multi-turn chat runs before it restarts.
	Turns int
	// ToolSets and ToolTokens (multi-turn only): each user's requests carry
	// one of ToolSets tool definitions (user u has set u mod ToolSets) of
	// ToolTokens tokens, rendered after the system prompt as chat templates
	// do. 0 sends no tools.
	ToolSets, ToolTokens int
	// PreambleTokens, Images, ImageTokens and ImageSkew parameterise
	// ShapeMultimodal.
	PreambleTokens, Images, ImageTokens int
	ImageSkew                           float64
	// Samples is ShapeFanOut's burst size.
	Samples int
	// Adapters splits traffic over LoRA adapters; empty means base model.
	Adapters []AdapterClass
}

// LogNormal is a length distribution given by its median and mean, clamped
// to [1, Max].
type LogNormal struct {
	Median, Mean, Max int
}

// AdapterClass is Count adapters each receiving Share of the traffic.
type AdapterClass struct {
	Count int
	Share float64
}

// SLO is the objective goodput is measured against: time to first token and
// time per output token after the first (inference-perf's TPOT, the mean
// inter-token latency of a request).
type SLO struct {
	TTFT time.Duration
	ITL  time.Duration
}

// Workload is one traffic scenario with the fleet it runs on.
type Workload struct {
	// Name is what --workload takes; ID is performance.md §5.A's (W1…W7).
	Name, ID    string
	Description string
	// Published states the published setup and Scaling how this workload
	// scales it down (for the report).
	Published, Scaling string
	// Profile is the engine preset (engine.Profile).
	Profile string
	Servers int
	Traffic Traffic
	// KVFraction applies the sizing rule: each server's KV cache is chosen
	// so that the working set is this fraction of the fleet's cache. 0 keeps
	// the profile's cache size.
	KVFraction float64
	// MaxLoRAs, MaxCPULoRAs, LoRALoadDelay and LoRAActivateDelay override
	// the profile when MaxLoRAs > 0 (engine.Config's fields).
	MaxLoRAs, MaxCPULoRAs            int
	LoRALoadDelay, LoRAActivateDelay time.Duration
	// EncodePerToken and EncoderCacheTokens set the engine's multimodal
	// encoder (engine.Config); 0 keeps the profile's.
	EncodePerToken     time.Duration
	EncoderCacheTokens int
	// KVTransferPerToken overrides the profile's price of pulling a
	// token's KV (P/D and P2P pulls); 0 keeps the profile's.
	KVTransferPerToken time.Duration
	// Ladder is the QPS of each stage; Duration how long each stage sends;
	// WarmupRequests how many requests precede a stage's measured window.
	Ladder         []float64
	Duration       time.Duration
	WarmupRequests int
	SLO            SLO
	// MinSeeds is the fewest seeds a benchmark runs this workload with
	// (more than the matrix asks for when the comparisons it feeds are
	// noisy at saturation).
	MinSeeds int
}

// Validate reports every problem of w at once.
func (w *Workload) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if w.Name == "" {
		bad("name: must not be empty")
	}
	if w.Servers < 1 || w.Servers > maxServers {
		bad("servers: must be in [1, %d], got %d", maxServers, w.Servers)
	}
	if !(w.KVFraction >= 0 && w.KVFraction <= 1) {
		bad("kvFraction: must be in [0, 1], got %v", w.KVFraction)
	}
	if len(w.Ladder) == 0 {
		bad("ladder: at least one QPS stage is required")
	}
	for i, q := range w.Ladder {
		if !(q > 0 && q <= maxQPS) {
			bad("ladder[%d]: QPS must be in (0, %g], got %v", i, maxQPS, q)
		}
	}
	if w.Duration <= 0 || w.Duration > maxDuration {
		bad("duration: must be in (0, %s], got %s", maxDuration, w.Duration)
	}
	if w.MinSeeds < 0 || w.MinSeeds > maxSeeds {
		bad("minSeeds: must be in [0, %d], got %d", maxSeeds, w.MinSeeds)
	}
	if w.WarmupRequests < 0 {
		bad("warmupRequests: must be >= 0, got %d", w.WarmupRequests)
	}
	if w.SLO.TTFT <= 0 || w.SLO.ITL <= 0 {
		bad("slo: TTFT and ITL must be > 0, got %s and %s", w.SLO.TTFT, w.SLO.ITL)
	}
	if err := w.Traffic.validate(); err != nil {
		errs = append(errs, fmt.Errorf("traffic: %w", err))
	}
	return errors.Join(errs...)
}

// Limits on inputs, so that a typo cannot ask for a run that never ends.
const (
	maxServers  = 1024
	maxQPS      = 1e5
	maxDuration = 24 * time.Hour
	maxTokens   = 1 << 20
	maxSeeds    = 1000
)

func (t *Traffic) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch t.Shape {
	case ShapeSharedPrefix, ShapeMultiTurn:
		if t.Groups < 1 || t.PromptsPerGroup < 1 {
			bad("groups and promptsPerGroup: must be >= 1, got %d and %d", t.Groups, t.PromptsPerGroup)
		}
		if t.SystemTokens < 0 || t.QuestionTokens < 1 || t.OutputTokens < 1 ||
			t.SystemTokens+t.QuestionTokens > maxTokens || t.OutputTokens > maxTokens {
			bad("system/question/output tokens: want system >= 0, question and output >= 1 and at most %d, got %d/%d/%d",
				maxTokens, t.SystemTokens, t.QuestionTokens, t.OutputTokens)
		}
		if t.Shape == ShapeMultiTurn && (t.Turns < 1 || t.Turns > 1000) {
			bad("turns: must be in [1, 1000], got %d", t.Turns)
		}
		if t.ToolSets < 0 || t.ToolTokens < 0 || t.ToolTokens > maxTokens || (t.ToolSets > 0) != (t.ToolTokens > 0) ||
			t.ToolSets > 0 && t.Shape != ShapeMultiTurn {
			bad("toolSets and toolTokens: both 0, or both >= 1 (tokens at most %d) on a multi-turn workload, got %d and %d",
				maxTokens, t.ToolSets, t.ToolTokens)
		}
	case ShapeShareGPT:
		for _, d := range []struct {
			name string
			ln   LogNormal
		}{{"input", t.Input}, {"output", t.Output}} {
			if d.ln.Median < 1 || d.ln.Mean < d.ln.Median || d.ln.Max < d.ln.Median || d.ln.Max > maxTokens {
				bad("%s: want 1 <= median <= mean and median <= max <= %d, got %+v", d.name, maxTokens, d.ln)
			}
		}
	case ShapeMultimodal:
		t.validateMultimodal(bad)
	case ShapeFanOut:
		t.validateFanOut(bad)
	default:
		bad("shape: unknown %q (known: %s, %s, %s, %s, %s)", t.Shape, ShapeSharedPrefix, ShapeShareGPT, ShapeMultiTurn, ShapeMultimodal, ShapeFanOut)
	}
	total := 0.0
	for i, a := range t.Adapters {
		if a.Count < 1 || !(a.Share > 0) {
			bad("adapters[%d]: count must be >= 1 and share > 0, got %d and %v", i, a.Count, a.Share)
		}
		total += float64(a.Count) * a.Share
	}
	if len(t.Adapters) > 0 && (total < 0.999 || total > 1.001) {
		bad("adapters: shares must sum to 1, got %.4f", total)
	}
	return errors.Join(errs...)
}

// WorkingSetTokens is the prompt tokens the workload keeps reusing, which
// the sizing rule compares with the fleet's KV cache: every distinct
// shared-prefix prompt (a group's system prompt once plus each question), or
// every multi-turn chat at its mean length. 0 for unshared traffic.
func (t *Traffic) WorkingSetTokens() int {
	switch t.Shape {
	case ShapeSharedPrefix:
		return t.Groups * (t.SystemTokens + t.PromptsPerGroup*t.QuestionTokens)
	case ShapeMultiTurn:
		meanTurns := float64(t.Turns+1) / 2
		perUser := meanTurns * float64(t.QuestionTokens+t.OutputTokens)
		return t.Groups*t.SystemTokens + t.ToolSets*t.ToolTokens + int(float64(t.Groups*t.PromptsPerGroup)*perUser)
	}
	return 0
}

// maxRequestTokens bounds one request's prompt plus output tokens.
func (t *Traffic) maxRequestTokens() int {
	switch t.Shape {
	case ShapeSharedPrefix:
		return t.SystemTokens + t.QuestionTokens + t.OutputTokens
	case ShapeMultiTurn:
		return t.SystemTokens + t.ToolTokens + t.Turns*(t.QuestionTokens+t.OutputTokens)
	case ShapeMultimodal:
		return t.SystemTokens + t.PreambleTokens + t.ImageTokens + t.QuestionTokens + t.OutputTokens + 8
	case ShapeFanOut:
		return t.SystemTokens + t.QuestionTokens + t.OutputTokens
	}
	return t.Input.Max + t.Output.Max
}

// Workloads returns the built-in workloads (performance.md §5.A), in report
// order. Each call returns fresh copies the caller may modify.
func Workloads() []Workload {
	return []Workload{
		sharedPrefixW1(), lowCacheW2(), gspW3(), noSharingW4(), multiLoRAW5(), multiTurnW6(), agenticW7(),
		agentSessionsW8(), manyLoRAW9(),
	}
}

// WorkloadByName returns the built-in workload called name (or its ID, such
// as "W1"), including the studies' own (long-prompt, agent-tools,
// multimodal).
func WorkloadByName(name string) (Workload, error) {
	var names []string
	for _, w := range append(Workloads(), LongPromptWorkload(), AgentToolsWorkload(), MultimodalWorkload(), MultimodalColdWorkload(), FanOutWorkload()) {
		if strings.EqualFold(w.Name, name) || strings.EqualFold(w.ID, name) {
			return w, nil
		}
		names = append(names, w.Name)
	}
	slices.Sort(names)
	return Workload{}, fmt.Errorf("unknown workload %q (known: %s)", name, strings.Join(names, ", "))
}

// Quick shrinks w for smoke runs: three low stages of a few seconds each
// and a short warm-up, on the same fleet. Results are not meaningful; the
// point is that every code path runs.
func Quick(w Workload) Workload {
	w.Duration = min(w.Duration, 2*time.Second)
	w.WarmupRequests = min(w.WarmupRequests, 20)
	w.MinSeeds = 0
	if len(w.Ladder) > 3 {
		w.Ladder = []float64{w.Ladder[0], w.Ladder[len(w.Ladder)/2], w.Ladder[len(w.Ladder)-1]}
	}
	return w
}

// EngineConfig returns the per-server engine configuration of w: its
// profile, with the KV cache sized by the sizing rule (but never below
// twice the largest request) and the workload's LoRA slots.
func EngineConfig(w Workload) (engine.Config, error) {
	cfg, err := engine.Profile(w.Profile)
	if err != nil {
		return engine.Config{}, fmt.Errorf("workload %q: %w", w.Name, err)
	}
	if ws := w.Traffic.WorkingSetTokens(); w.KVFraction > 0 && ws > 0 {
		perServer := float64(ws) / w.KVFraction / float64(w.Servers)
		cfg.NumBlocks = int(perServer+float64(cfg.BlockSize)-1) / cfg.BlockSize
	}
	floor := (2*w.Traffic.maxRequestTokens() + cfg.BlockSize - 1) / cfg.BlockSize
	cfg.NumBlocks = max(cfg.NumBlocks, floor)
	if w.MaxLoRAs > 0 {
		cfg.MaxLoRAs, cfg.LoRALoadDelay = w.MaxLoRAs, w.LoRALoadDelay
		cfg.MaxCPULoRAs, cfg.LoRAActivateDelay = w.MaxCPULoRAs, w.LoRAActivateDelay
	}
	if w.EncodePerToken > 0 {
		cfg.EncodePerToken = w.EncodePerToken
	}
	if w.EncoderCacheTokens > 0 {
		cfg.EncoderCacheTokens = w.EncoderCacheTokens
	}
	if w.KVTransferPerToken > 0 {
		cfg.KVTransferPerToken = w.KVTransferPerToken
	}
	if err := cfg.Validate(); err != nil {
		return engine.Config{}, fmt.Errorf("workload %q: engine: %w", w.Name, err)
	}
	return cfg, nil
}
