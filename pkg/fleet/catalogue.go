package fleet

import "time"

// The built-in workloads. Long-prompt workloads are scaled down by a token
// factor s (prompt, question and output tokens, and so the KV cache the
// sizing rule derives from them, all ÷ s) while the engine's per-token and
// per-step costs stay the published fits. A scaled request therefore costs
// about 1/s of the GPU time, the fleet serves about s times the published
// QPS at about 1/s of the latencies, output tokens/s and every ratio between
// policies are unchanged, and the TTFT objective is scaled by 1/s too. The
// ladders below are the published ones × s.

// tokenScale is s for the long-prompt workloads (W1, W2, W7).
const tokenScale = 8

// scaledLadder multiplies a published QPS ladder by s.
func scaledLadder(s float64, qps ...float64) []float64 {
	out := make([]float64, len(qps))
	for i, q := range qps {
		out[i] = q * s
	}
	return out
}

// canonicalLadder is the llm-d / GIE high-cache ladder (3 → 60 QPS), thinned
// to nine stages.
var canonicalLadder = []float64{3, 10, 15, 20, 25, 30, 40, 50, 60}

func sharedPrefixW1() Workload {
	return Workload{
		Name: "shared-prefix", ID: "W1",
		Description: "canonical high-cache shared prefix: 150 groups × 5 prompts",
		Published:   "llm-d / GIE high-cache: 150 × 5, 6,000 / 1,200 / 1,000 tokens, 8 × Qwen3-32B TP2 (307,328 KV tokens each), Poisson 3 → 60 QPS",
		Scaling:     "tokens ÷ 8 (750 / 150 / 125); KV sized so the working set is 73 % of the fleet (≈ 5.8 servers' worth), i.e. 307,328 ÷ 8 per server; QPS × 8; TTFT objective 2 s ÷ 8",
		Profile:     "qwen32b-tp2", Servers: 8, KVFraction: 0.73,
		Traffic: Traffic{
			Shape: ShapeSharedPrefix, Groups: 150, PromptsPerGroup: 5,
			SystemTokens: 6000 / tokenScale, QuestionTokens: 1200 / tokenScale, OutputTokens: 1000 / tokenScale,
		},
		Ladder: scaledLadder(tokenScale, canonicalLadder...), Duration: 30 * time.Second, WarmupRequests: 750,
		SLO:      SLO{TTFT: 2 * time.Second / tokenScale, ITL: 50 * time.Millisecond},
		MinSeeds: 10, // the goal of OpenEPP against upstream is judged here
	}
}

func lowCacheW2() Workload {
	w := sharedPrefixW1()
	w.MinSeeds = 0
	w.Name, w.ID = "low-cache", "W2"
	w.Description = "low-cache flip of W1: short shared system prompt, long unique question"
	w.Published = "GIE low-cache: 150 × 5, 1,200 / 6,000 / 1,000 tokens, same fleet and ladder as W1"
	w.Scaling = "as W1 (tokens ÷ 8: 150 / 750 / 125; KV sized by the 73 % rule on this working set)"
	w.Traffic.SystemTokens, w.Traffic.QuestionTokens = 1200/tokenScale, 6000/tokenScale
	return w
}

func gspW3() Workload {
	const s = 4
	return Workload{
		Name: "gsp", ID: "W3",
		Description: "SGLang generated-shared-prefix: 64 groups × 16 prompts",
		Published:   "SGLang bench_serving generated-shared-prefix defaults: 64 × 16, 2,048 / 128 / 256 tokens, 8 × Llama-3.1-8B",
		Scaling:     "tokens ÷ 4 (512 / 32 / 64); BLIS Llama-3.1-8B/H100 fit; KV sized by the 73 % rule; TTFT objective 2 s ÷ 4",
		Profile:     "blis-l8b-h100", Servers: 8, KVFraction: 0.73,
		Traffic: Traffic{
			Shape: ShapeSharedPrefix, Groups: 64, PromptsPerGroup: 16,
			SystemTokens: 2048 / s, QuestionTokens: 128 / s, OutputTokens: 256 / s,
		},
		Ladder: []float64{200, 400, 800, 1200, 1600, 2000, 2400, 3200}, Duration: 15 * time.Second, WarmupRequests: 1024,
		SLO: SLO{TTFT: 2 * time.Second / s, ITL: 25 * time.Millisecond},
	}
}

// shareGPTInput and shareGPTOutput are the ShareGPT shape of GIE's sample
// LPG output: input mean 252 (median 109, max 1,024), output mean 225
// (median 144).
var (
	shareGPTInput  = LogNormal{Median: 110, Mean: 250, Max: 1024}
	shareGPTOutput = LogNormal{Median: 144, Mean: 225, Max: 1024}
)

func noSharingW4() Workload {
	return Workload{
		Name: "no-sharing", ID: "W4",
		Description: "no shared prefixes (control): unique ShareGPT-like prompts",
		Published:   "GIE ShareGPT benchmark: input mean ~250 (median ~110, max 1,024), output mean ~225; Llama-class 8B on H100",
		Scaling:     "unscaled; BLIS Llama-3.1-8B/H100 fit with its full KV cache (29,205 blocks × 16)",
		Profile:     "blis-l8b-h100", Servers: 8,
		Traffic: Traffic{Shape: ShapeShareGPT, Input: shareGPTInput, Output: shareGPTOutput},
		Ladder:  []float64{100, 200, 400, 600, 800, 1000, 1200}, Duration: 20 * time.Second, WarmupRequests: 500,
		SLO: SLO{TTFT: 2 * time.Second, ITL: 25 * time.Millisecond},
	}
}

func multiLoRAW5() Workload {
	return Workload{
		Name: "multi-lora", ID: "W5",
		Description: "15 LoRA adapters (12 % × 5, 6 % × 5, 2 % × 5), 3 adapter slots per server, decode-heavy",
		Published:   "GIE multi-LoRA regression: 15 rank-8 adapters, traffic 60 % on 5, 30 % on 5, 10 % on 5, max-loras 3; no published routing result",
		Scaling:     "unscaled ShareGPT-like prompts, outputs median 300 / mean 400; BLIS Llama-3.1-8B/H100 fit; adapter load 50 ms (unpublished; performance.md suggests sweeping 0/50/200 ms)",
		Profile:     "blis-l8b-h100", Servers: 8, MaxLoRAs: 3, LoRALoadDelay: 50 * time.Millisecond,
		Traffic: Traffic{
			Shape: ShapeShareGPT, Input: shareGPTInput, Output: LogNormal{Median: 300, Mean: 400, Max: 1024},
			Adapters: []AdapterClass{{Count: 5, Share: 0.12}, {Count: 5, Share: 0.06}, {Count: 5, Share: 0.02}},
		},
		Ladder: []float64{50, 100, 200, 300, 400, 500, 600}, Duration: 15 * time.Second, WarmupRequests: 500,
		SLO: SLO{TTFT: 2 * time.Second, ITL: 25 * time.Millisecond},
	}
}

// manyLoRAW9 has many more adapters than GPU adapter slots, with a host
// cache behind the slots as vLLM's --max-cpu-loras, so where an adapter
// already lives (GPU slot, host cache, nowhere) decides what a request costs
// its server: what llm-d's lora-load-state-scorer and lora-residency-filter
// read.
func manyLoRAW9() Workload {
	w := multiLoRAW5()
	w.Name, w.ID = "many-lora", "W9"
	w.Description = "64 LoRA adapters (6 % × 8, 1.5 % × 24, 0.5 % × 32) over 4 GPU adapter slots and a 16-adapter host cache per server, decode-heavy"
	w.Published = "none: the shape of llm-d's residency plugins' use case (many adapters, few slots, a host cache); adapter costs not published"
	w.Scaling = "unscaled ShareGPT-like prompts, outputs median 300 / mean 400; BLIS Llama-3.1-8B/H100 fit; adapter load from disk 100 ms, host-to-GPU activation 50 ms (assumed)"
	w.MaxLoRAs, w.MaxCPULoRAs = 4, 16
	w.LoRALoadDelay, w.LoRAActivateDelay = 100*time.Millisecond, 50*time.Millisecond
	w.Traffic.Adapters = []AdapterClass{{Count: 8, Share: 0.06}, {Count: 24, Share: 0.015}, {Count: 32, Share: 0.005}}
	w.Ladder = []float64{10, 25, 50, 100, 200, 400}
	return w
}

func multiTurnW6() Workload {
	return Workload{
		Name: "multi-turn", ID: "W6",
		Description: "multi-turn chat: 32 groups × 8 users, each chat growing by one question and answer per request, 8 turns",
		Published:   "inference-perf shared_prefix with enable_multi_turn_chat (no canonical published parameters)",
		Scaling:     "own parameters: system 512, question 64, answer 64 tokens; BLIS Llama-3.1-8B/H100 fit; KV sized by the 73 % rule on the mean chat length",
		Profile:     "blis-l8b-h100", Servers: 8, KVFraction: 0.73,
		Traffic: Traffic{
			Shape: ShapeMultiTurn, Groups: 32, PromptsPerGroup: 8,
			SystemTokens: 512, QuestionTokens: 64, OutputTokens: 64, Turns: 8,
		},
		Ladder: []float64{200, 300, 400, 500, 600, 700, 800, 1000}, Duration: 10 * time.Second, WarmupRequests: 1024,
		SLO: SLO{TTFT: time.Second, ITL: 25 * time.Millisecond},
	}
}

func agenticW7() Workload {
	return Workload{
		Name: "agentic", ID: "W7",
		Description: "long-context agentic prompts: 10 groups × 5 prompts",
		Published:   "llm-d-router shared_prefix_100k: 10 × 5, 95,000 / 5,000 / 1,000 tokens at 10 QPS",
		Scaling:     "tokens ÷ 8 (11,875 / 625 / 125); Qwen3-32B TP2 fit; KV sized by the 73 % rule; QPS × 8; TTFT objective 2 s ÷ 8",
		Profile:     "qwen32b-tp2", Servers: 8, KVFraction: 0.73,
		Traffic: Traffic{
			Shape: ShapeSharedPrefix, Groups: 10, PromptsPerGroup: 5,
			SystemTokens: 95000 / tokenScale, QuestionTokens: 5000 / tokenScale, OutputTokens: 1000 / tokenScale,
		},
		Ladder: scaledLadder(tokenScale, 0.5, 1, 2, 3, 4, 6, 8, 10), Duration: 60 * time.Second, WarmupRequests: 100,
		SLO: SLO{TTFT: 2 * time.Second / tokenScale, ITL: 50 * time.Millisecond},
	}
}

// agentSessionsW8 is coding-agent traffic as Claude Code sends it to a
// self-hosted pool: every session starts from the same long system prompt
// and tool definitions, then grows by a tool result and an answer per
// request. Token counts are unscaled: what separates one session from
// another lies beyond the first 20,000 tokens, so scaling them down would
// move it inside a prefix index's matching window and hide the effect the
// workload is for.
func agentSessionsW8() Workload {
	return Workload{
		Name: "agent-sessions", ID: "W8",
		Description: "coding-agent sessions: 48 sessions sharing one 20,000-token system prompt and tools, each growing by a " +
			"2,000-token tool result and a 250-token answer per request, 16 requests per session",
		Published: "no published routing result; shape from Claude Code's requests (one long system prompt and tool set " +
			"for every session, a per-session conversation after it)",
		Scaling: "unscaled tokens (the matching window is the point); Qwen3-32B TP2 fit; KV sized by the 73 % rule on " +
			"the mean session length",
		Profile: "qwen32b-tp2", Servers: 8, KVFraction: 0.73,
		Traffic: Traffic{
			Shape: ShapeMultiTurn, Groups: 1, PromptsPerGroup: 48,
			SystemTokens: 20000, QuestionTokens: 2000, OutputTokens: 250, Turns: 16,
		},
		Ladder: []float64{1, 2, 4, 6, 8, 10, 12}, Duration: 60 * time.Second, WarmupRequests: 96,
		SLO: SLO{TTFT: 4 * time.Second, ITL: 50 * time.Millisecond},
	}
}

// AgentToolsWorkload is W8's coding-agent sessions with the tool set varying
// between users, as MCP servers and plugins make it: every session starts
// from one shared system prompt, then one of a few large tool sets, then its
// own conversation. It measures what counting tools in the prefix index is
// worth; a study, not in Workloads.
func AgentToolsWorkload() Workload {
	w := agentSessionsW8()
	w.Name, w.ID = "agent-tools", "AT"
	w.Description = "coding-agent sessions as W8, but the 20,000-token head split into a 4,000-token system prompt " +
		"shared by all and 16,000 tokens of tools, one of 4 tool sets per user"
	w.Published = "no published routing result; shape from Claude Code with per-user MCP tool sets"
	w.Traffic.SystemTokens, w.Traffic.ToolSets, w.Traffic.ToolTokens = 4000, 4, 16000
	return w
}
