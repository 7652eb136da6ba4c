package fleet

import (
	"math/rand/v2"
	"time"

	"github.com/openepp/openepp/pkg/sim/tokenize"
)

// ShapeFanOut is requests arriving in bursts of Samples copies of one new
// prompt: an RL rollout step's n samples, best-of-N, an agent fanning one
// context out to parallel calls. Each prompt is one of Groups shared
// instructions (SystemTokens) and a unique problem (QuestionTokens).
const ShapeFanOut Shape = "fan-out"

// FanOutWorkload is the fan-out shape on eight servers: bursts of 8 samples
// of a 2,304-token prompt, 256 output tokens each. Every burst's prompt is
// new to every server, so only routing the samples together prefills it
// once. A study (burst-prefix-cache-producer), not in Workloads.
func FanOutWorkload() Workload {
	return Workload{
		Name: "fan-out", ID: "FO",
		Description: "bursts of 8 samples of one new prompt (RL rollouts, best-of-N): one of 4 shared 256-token instructions " +
			"and a unique 2,048-token problem, 256 output tokens; QPS counts samples",
		Published: "no published routing result; shape of llm-d's burst-prefix-cache-producer use (RL rollout groups, fan-out)",
		Scaling:   "unscaled; BLIS Llama-3.1-8B/H100 fit with its full KV cache",
		Profile:   "blis-l8b-h100", Servers: 8,
		Traffic: Traffic{Shape: ShapeFanOut, Groups: 4, SystemTokens: 256, QuestionTokens: 2048, OutputTokens: 256,
			Samples: 8},
		Ladder: []float64{40, 80, 120, 160, 200, 240}, Duration: 20 * time.Second, WarmupRequests: 400,
		SLO: SLO{TTFT: time.Second, ITL: 25 * time.Millisecond},
	}
}

// validateFanOut checks the fan-out shape's fields.
func (t *Traffic) validateFanOut(bad func(format string, args ...any)) {
	if t.Groups < 1 || t.SystemTokens < 0 || t.QuestionTokens < 1 || t.OutputTokens < 1 ||
		t.SystemTokens+t.QuestionTokens+t.OutputTokens > maxTokens {
		bad("groups/system/question/output: want groups, question and output >= 1, system >= 0, a request at most %d tokens, got %d/%d/%d/%d",
			maxTokens, t.Groups, t.SystemTokens, t.QuestionTokens, t.OutputTokens)
	}
	if t.Samples < 1 || t.Samples > 1024 {
		bad("samples: must be in [1, 1024], got %d", t.Samples)
	}
}

// fanOut generates the fan-out shape: Samples copies of a prompt, then a
// new one.
type fanOut struct {
	shared sharedPrefix // its instructions and body building
	n      uint64
	left   int
	cur    *prompt
}

func newFanOut(t Traffic, model string, seed uint64) *fanOut {
	return &fanOut{shared: sharedPrefix{t: t, model: model, seed: seed}}
}

func (f *fanOut) next(rng *rand.Rand) (*prompt, error) {
	if f.left == 0 {
		t := &f.shared.t
		sys, sysToks := f.shared.system(rng.IntN(t.Groups))
		f.n++
		q := words(segmentRNG(f.shared.seed, segUnique, f.n, 0), t.QuestionTokens)
		body, err := completionBody(f.shared.model, sys+q, t.OutputTokens)
		if err != nil {
			return nil, err
		}
		toks := tokenize.Append(append(make([]uint32, 0, len(sysToks)+t.QuestionTokens), sysToks...), q)
		f.cur, f.left = &prompt{body: body, tokens: toks, maxTokens: t.OutputTokens}, t.Samples
	}
	f.left--
	return f.cur, nil
}

// inBurst reports whether the last prompt's burst has samples to come.
func (f *fanOut) inBurst() bool { return f.left > 0 }

// nextArrival is when the next request arrives: at once within a burst,
// else after an exponential gap whose mean keeps the request rate at QPS.
func (s *sim) nextArrival() time.Duration {
	f, ok := s.src.(*fanOut)
	if !ok {
		return s.interarrival()
	}
	if f.inBurst() {
		return s.now()
	}
	return s.now() + time.Duration(s.rng.ExpFloat64()*float64(f.shared.t.Samples)/s.spec.QPS*float64(time.Second))
}
