package fleet

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/sim/engine"
	"github.com/openepp/openepp/pkg/sim/tokenize"
)

// prompt is one request's content: the parsed body the EPP sees and the
// tokens the engine computes.
type prompt struct {
	body      *request.Body
	tokens    []uint32
	lora      string // adapter name, "" for the base model
	maxTokens int
	media     []engine.Media // multimodal items in tokens
}

// source generates the prompts of a workload. Calls come in arrival order
// and draw their randomness from rng only, so the trace depends on the seed
// and never on routing.
type source interface {
	next(rng *rand.Rand) (*prompt, error)
}

// newSource returns the generator for t; seed fixes every generated text.
func newSource(t Traffic, model string, seed uint64) (source, error) {
	adapters := adapterPicker(t.Adapters)
	switch t.Shape {
	case ShapeSharedPrefix:
		return &sharedPrefix{t: t, model: model, seed: seed, prompts: make([]*prompt, t.Groups*t.PromptsPerGroup)}, nil
	case ShapeShareGPT:
		return &shareGPT{t: t, model: model, seed: seed, adapters: adapters}, nil
	case ShapeMultiTurn:
		return newMultiTurn(t, model, seed), nil
	case ShapeMultimodal:
		return newMultimodal(t, model, seed), nil
	case ShapeFanOut:
		return newFanOut(t, model, seed), nil
	}
	return nil, fmt.Errorf("traffic shape %q: unknown", t.Shape)
}

// sharedPrefix serves inference-perf's shared_prefix prompts, building each
// distinct prompt once.
type sharedPrefix struct {
	t       Traffic
	model   string
	seed    uint64
	systems []string
	sysToks [][]uint32
	prompts []*prompt
}

func (s *sharedPrefix) next(rng *rand.Rand) (*prompt, error) {
	i := rng.IntN(len(s.prompts))
	if p := s.prompts[i]; p != nil {
		return p, nil
	}
	g, u := i/s.t.PromptsPerGroup, i%s.t.PromptsPerGroup
	sys, sysToks := s.system(g)
	q := words(segmentRNG(s.seed, segQuestion, uint64(g), uint64(u)), s.t.QuestionTokens)
	body, err := completionBody(s.model, sys+q, s.t.OutputTokens)
	if err != nil {
		return nil, err
	}
	toks := make([]uint32, 0, len(sysToks)+s.t.QuestionTokens)
	toks = tokenize.Append(append(toks, sysToks...), q)
	p := &prompt{body: body, tokens: toks, maxTokens: s.t.OutputTokens}
	s.prompts[i] = p
	return p, nil
}

// system returns group g's system prompt and its tokens, built once.
func (s *sharedPrefix) system(g int) (string, []uint32) {
	if s.systems == nil {
		s.systems = make([]string, s.t.Groups)
		s.sysToks = make([][]uint32, s.t.Groups)
	}
	if s.sysToks[g] == nil {
		s.systems[g] = words(segmentRNG(s.seed, segSystem, uint64(g), 0), s.t.SystemTokens)
		s.sysToks[g] = tokenize.Append(make([]uint32, 0, s.t.SystemTokens), s.systems[g])
	}
	return s.systems[g], s.sysToks[g]
}

// shareGPT generates a unique prompt per request with log-normal lengths.
type shareGPT struct {
	t        Traffic
	model    string
	seed     uint64
	n        uint64
	adapters func(rng *rand.Rand) string
}

func (s *shareGPT) next(rng *rand.Rand) (*prompt, error) {
	in, out := s.t.Input.draw(rng), s.t.Output.draw(rng)
	lora := s.adapters(rng)
	s.n++
	text := words(segmentRNG(s.seed, segUnique, s.n, 0), in)
	model := s.model
	if lora != "" {
		model = lora
	}
	body, err := completionBody(model, text, out)
	if err != nil {
		return nil, err
	}
	return &prompt{body: body, tokens: tokenize.Append(make([]uint32, 0, in), text), lora: lora, maxTokens: out}, nil
}

// draw samples the log-normal with the given median and mean, clamped to
// [1, Max]: μ = ln(median), σ² = 2·ln(mean/median).
func (d LogNormal) draw(rng *rand.Rand) int {
	mu := math.Log(float64(d.Median))
	sigma := math.Sqrt(2 * math.Log(float64(d.Mean)/float64(d.Median)))
	v := math.Exp(mu + sigma*rng.NormFloat64())
	return min(max(int(math.Round(v)), 1), d.Max)
}

// adapterPicker returns a function drawing an adapter name from classes
// ("" when there are none). Adapters are named lora-01, lora-02, … in class
// order.
func adapterPicker(classes []AdapterClass) func(rng *rand.Rand) string {
	if len(classes) == 0 {
		return func(*rand.Rand) string { return "" }
	}
	var names []string
	var cum []float64
	total := 0.0
	for _, c := range classes {
		for range c.Count {
			total += c.Share
			names = append(names, fmt.Sprintf("lora-%02d", len(names)+1))
			cum = append(cum, total)
		}
	}
	return func(rng *rand.Rand) string {
		x := rng.Float64() * total
		for i, c := range cum {
			if x < c {
				return names[i]
			}
		}
		return names[len(names)-1]
	}
}

// multiTurn keeps one chat per user; each request is the user's next turn.
type multiTurn struct {
	t     Traffic
	model string
	seed  uint64
	users []chat
}

// chat is one user's conversation so far.
type chat struct {
	session uint64 // restarts so far, so a new chat gets new questions
	turn    int    // turns already sent in this session
	msgs    []message
	tools   string // the user's tool set's description, or ""
	tokens  []uint32
}

func newMultiTurn(t Traffic, model string, seed uint64) *multiTurn {
	return &multiTurn{t: t, model: model, seed: seed, users: make([]chat, t.Groups*t.PromptsPerGroup)}
}

func (m *multiTurn) next(rng *rand.Rand) (*prompt, error) {
	u := rng.IntN(len(m.users))
	c := &m.users[u]
	if c.turn == m.t.Turns || c.msgs == nil {
		m.restart(c, u)
	}
	// The user picks the segment and the session and turn the text within
	// it: segmentRNG keeps 32 bits of each half.
	turn := c.session<<8 | uint64(c.turn)
	q := message{role: "user", content: words(segmentRNG(m.seed, segQuestion, uint64(u), turn), m.t.QuestionTokens)}
	c.msgs = append(c.msgs, q)
	c.tokens = chatTokens(c.tokens, q)
	body, err := chatBody(m.model, c.msgs, c.tools, m.t.OutputTokens)
	if err != nil {
		return nil, err
	}
	p := &prompt{body: body, tokens: c.tokens, maxTokens: m.t.OutputTokens}
	// The answer joins the history for the next turn; the engine reads the
	// prompt's tokens at submission, before this slice grows again.
	a := message{role: "assistant", content: words(segmentRNG(m.seed, segAnswer, uint64(u), turn), m.t.OutputTokens)}
	c.msgs = append(c.msgs, a)
	c.tokens = chatTokens(c.tokens[:len(c.tokens):len(c.tokens)], a)
	c.turn++
	return p, nil
}

// restart begins a new chat for user u with its group's system prompt.
func (m *multiTurn) restart(c *chat, u int) {
	if c.msgs != nil {
		c.session++
	}
	g := u / m.t.PromptsPerGroup
	sys := message{role: "system", content: words(segmentRNG(m.seed, segSystem, uint64(g), 0), m.t.SystemTokens)}
	c.turn = 0
	c.msgs = []message{sys}
	c.tokens = chatTokens(nil, sys)
	if m.t.ToolSets > 0 {
		// Rendered after the system prompt, as the chat template does.
		set := uint64(u % m.t.ToolSets)
		c.tools = words(segmentRNG(m.seed, segTools, set, 0), m.t.ToolTokens)
		c.tokens = tokenize.Append(c.tokens, c.tools)
	}
}
