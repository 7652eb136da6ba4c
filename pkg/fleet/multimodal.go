package fleet

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/sim/engine"
	"github.com/openepp/openepp/pkg/sim/tokenize"
)

// MultimodalWorkload is users chatting with a vision model about images
// drawn from a shared pool with Zipf popularity. Each request is one of a
// few system prompts, a short preamble of the user's own, one image and a
// question: the preamble before the image keeps the prefix cache from ever
// covering the image's placeholders, so only the server's encoder cache can
// save encoding it again. It measures encoder-cache affinity
// (config/multimodal-affinity.yaml); a study, not in Workloads, so
// bench-fleet's matrix does not run it.
//
// The model's assumption: encoding an image costs as much as prefilling
// 2.5 × its placeholder tokens (a ViT encoder is heavier per token than the
// language model's prefill at this batch size), EncodePerToken = 2.5 ×
// the profile's PrefillPerToken.
func MultimodalWorkload() Workload {
	const (
		imageTokens = 576 // a 336×336 ViT-L/14 image (LLaVA-1.5)
		cacheImages = 64  // per server
		images      = 256 // 4 servers' encoder caches, half the fleet's
	)
	return Workload{
		Name: "multimodal", ID: "MM",
		Description: "vision chat: 8 system prompts of 256 tokens, a unique 16-token preamble, one 576-token image " +
			"from a pool of 256 (Zipf s = 1), a unique 48-token question, 96 output tokens",
		Published: "no published routing result; shape of llm-d's multimodal precise-affinity guide (images reused " +
			"across requests, the encoder cache per server)",
		Scaling: "unscaled; BLIS Llama-3.1-8B/H100 fit with its full KV cache; encoder assumed 2.5 × the prefill cost " +
			"per placeholder token (43 µs, 25 ms an image); encoder cache 64 images (36,864 tokens) per server, " +
			"the pool 4 servers' caches and half the fleet's",
		Profile: "blis-l8b-h100", Servers: 8,
		EncodePerToken: 43 * time.Microsecond, EncoderCacheTokens: cacheImages * imageTokens,
		Traffic: Traffic{
			Shape: ShapeMultimodal, Groups: 8, SystemTokens: 256, PreambleTokens: 16, QuestionTokens: 48,
			OutputTokens: 96, Images: images, ImageTokens: imageTokens, ImageSkew: 1,
		},
		Ladder: []float64{100, 200, 250, 300, 350, 400, 500}, Duration: 15 * time.Second, WarmupRequests: 1024,
		SLO: SLO{TTFT: time.Second, ITL: 25 * time.Millisecond},
	}
}

// MultimodalColdWorkload is MultimodalWorkload without system prompts: the
// first thing in every prompt is the user's own preamble, so no server
// holds any block of a request's text and the prefix-cache scorer treats
// every request as cold. It measures how encoder-cache affinity and the
// placement of new prefixes share a decision; a study, not in Workloads.
func MultimodalColdWorkload() Workload {
	w := MultimodalWorkload()
	w.Name, w.ID = "multimodal-cold", "MMC"
	w.Description = "vision chat without a system prompt: a unique 16-token preamble, one 576-token image from a pool " +
		"of 256 (Zipf s = 1), a unique 48-token question, 96 output tokens"
	w.Traffic.Groups, w.Traffic.SystemTokens = 1, 0
	return w
}

// validateMultimodal checks the multimodal shape's fields.
func (t *Traffic) validateMultimodal(bad func(format string, args ...any)) {
	if t.Groups < 1 || t.SystemTokens < 0 || t.PreambleTokens < 1 || t.QuestionTokens < 1 || t.OutputTokens < 1 ||
		t.SystemTokens+t.PreambleTokens+t.QuestionTokens+t.ImageTokens+t.OutputTokens > maxTokens {
		bad("groups/system/preamble/question/output: want groups, preamble, question and output >= 1, system >= 0, "+
			"a request at most %d tokens, got %d/%d/%d/%d/%d", maxTokens, t.Groups, t.SystemTokens, t.PreambleTokens,
			t.QuestionTokens, t.OutputTokens)
	}
	if t.Images < 1 || t.Images > 1<<20 || t.ImageTokens < 1 || t.ImageTokens > int(tokenize.ReservedSize) ||
		!(t.ImageSkew >= 0 && t.ImageSkew <= 10) {
		bad("images/imageTokens/imageSkew: want images in [1, %d], image tokens in [1, %d], skew in [0, 10], got %d/%d/%v",
			1<<20, tokenize.ReservedSize, t.Images, t.ImageTokens, t.ImageSkew)
	}
}

// multimodal generates the multimodal shape's requests.
type multimodal struct {
	t       Traffic
	model   string
	seed    uint64
	n       uint64
	cum     []float64 // cumulative image popularity
	systems []message
	sysToks [][]uint32
}

func newMultimodal(t Traffic, model string, seed uint64) *multimodal {
	m := &multimodal{t: t, model: model, seed: seed, cum: make([]float64, t.Images)}
	total := 0.0
	for k := range m.cum {
		total += math.Pow(float64(k+1), -t.ImageSkew)
		m.cum[k] = total
	}
	for g := range t.Groups {
		if t.SystemTokens == 0 {
			m.systems, m.sysToks = append(m.systems, message{}), append(m.sysToks, nil)
			continue
		}
		sys := message{role: "system", content: words(segmentRNG(seed, segSystem, uint64(g), 0), t.SystemTokens)}
		m.systems = append(m.systems, sys)
		m.sysToks = append(m.sysToks, chatTokens(nil, sys))
	}
	return m
}

func (m *multimodal) next(rng *rand.Rand) (*prompt, error) {
	g := rng.IntN(m.t.Groups)
	img := sort.SearchFloat64s(m.cum, rng.Float64()*m.cum[len(m.cum)-1])
	img = min(img, len(m.cum)-1)
	m.n++
	preamble := words(segmentRNG(m.seed, segUnique, m.n, 0), m.t.PreambleTokens)
	question := words(segmentRNG(m.seed, segQuestion, m.n, 0), m.t.QuestionTokens)
	body, err := imageChatBody(m.model, m.systems[g].content, preamble, imageURL(img), question, m.t.OutputTokens)
	if err != nil {
		return nil, err
	}
	toks := make([]uint32, 0, len(m.sysToks[g])+m.t.PreambleTokens+m.t.ImageTokens+m.t.QuestionTokens+4)
	toks = tokenize.Append(append(toks, m.sysToks[g]...), "<|user|>\n")
	toks = tokenize.Append(toks, preamble)
	offset := len(toks)
	toks = appendImageTokens(toks, img, m.t.ImageTokens)
	toks = tokenize.Append(toks, question)
	media := []engine.Media{{ID: uint64(img) + 1, Offset: offset, Tokens: m.t.ImageTokens}}
	return &prompt{body: body, tokens: toks, maxTokens: m.t.OutputTokens, media: media}, nil
}

func imageURL(img int) string { return "https://img.example/" + strconv.Itoa(img) + ".png" }

// appendImageTokens appends image img's placeholders: IDs in tokenize's
// reserved range, which text never yields, derived from the image's number
// so that two images' placeholders differ.
func appendImageTokens(dst []uint32, img, n int) []uint32 {
	for p := range n {
		dst = append(dst, tokenize.ReservedBase+uint32((img*n+p)%int(tokenize.ReservedSize)))
	}
	return dst
}

// imageChatBody builds a streaming chat completion whose user message is
// text, an image_url part and more text, as vision clients send it.
func imageChatBody(model, system, preamble, url, question string, maxTokens int) (*request.Body, error) {
	var sb strings.Builder
	sb.WriteString(`{"model":`)
	sb.WriteString(strconv.Quote(model))
	sb.WriteString(`,"messages":[`)
	if system != "" {
		sb.WriteString(`{"role":"system","content":"`)
		sb.WriteString(system) // generated text needs no escaping
		sb.WriteString(`"},`)
	}
	sb.WriteString(`{"role":"user","content":[{"type":"text","text":"`)
	sb.WriteString(preamble)
	sb.WriteString(`"},{"type":"image_url","image_url":{"url":`)
	sb.WriteString(strconv.Quote(url))
	sb.WriteString(`}},{"type":"text","text":"`)
	sb.WriteString(question)
	sb.WriteString(`"}]}],"max_tokens":`)
	sb.WriteString(strconv.Itoa(maxTokens))
	sb.WriteString(`,"stream":true,"stream_options":{"include_usage":true}}`)
	b, err := request.Parse(request.ChatCompletions, []byte(sb.String()))
	if err != nil {
		return nil, fmt.Errorf("generated image chat body: %w", err)
	}
	return b, nil
}

// EncoderResult is what the servers' encoder caches did in a stage's
// window: multimodal items found (hits) or encoded (misses).
type EncoderResult struct {
	Hits   uint64  `json:"hits"`
	Misses uint64  `json:"misses"`
	HitPct float64 `json:"hitPct"`
}

// encoderResult is the window's encoder counts, nil when no item was
// looked up.
func (s *sim) encoderResult() *EncoderResult {
	hits := s.kvPulled[1].encHits - s.kvPulled[0].encHits
	misses := s.kvPulled[1].encMisses - s.kvPulled[0].encMisses
	if hits+misses == 0 {
		return nil
	}
	return &EncoderResult{Hits: hits, Misses: misses, HitPct: round3(100 * float64(hits) / float64(hits+misses))}
}

// writeEncoderLines prints each stage's encoder-cache hit rate, when any
// stage looked items up.
func writeEncoderLines(w io.Writer, r *Report) {
	writeStageTable(w, r, "encoder cache (multimodal items found / encoded in the window)", "hits\tmisses\thit%",
		func(s *StageResult) (string, bool) {
			if e := s.Encoder; e != nil {
				return fmt.Sprintf("%d\t%d\t%.1f", e.Hits, e.Misses, e.HitPct), true
			}
			return "", false
		})
}

// averageEncoder is average for the runs' encoder results: mean counts and
// the pooled hit rate; nil when no run looked an item up.
func averageEncoder(rs []*StageResult) *EncoderResult {
	var hits, misses uint64
	for _, r := range rs {
		if r.Encoder != nil {
			hits, misses = hits+r.Encoder.Hits, misses+r.Encoder.Misses
		}
	}
	if hits+misses == 0 {
		return nil
	}
	n := uint64(len(rs))
	return &EncoderResult{Hits: (hits + n/2) / n, Misses: (misses + n/2) / n, HitPct: round3(100 * float64(hits) / float64(hits+misses))}
}
