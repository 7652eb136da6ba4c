package latency

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/inflight"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
)

// ProducerType is the type name of Producer.
const ProducerType = "predicted-latency-producer"

// The request headers carrying latency objectives in milliseconds: GIE's
// names, then llm-d's.
var (
	ttftSLOHeaders = []string{"x-slo-ttft-ms", "x-llm-d-slo-ttft-ms"}
	tpotSLOHeaders = []string{"x-slo-tpot-ms", "x-llm-d-slo-tpot-ms"}
)

// ProducerParams configures Producer with the parameters of GIE's and
// llm-d's predicted-latency-producer; those about the sidecar's sampling
// are accepted and have nothing to act on in process.
type ProducerParams struct {
	SamplingMean                       float64 `json:"samplingMean" doc:"accepted for upstream configs (the sidecar's decode-token sampling); the in-process model learns from every request" default:"1000"`
	MaxDecodeTokenSamplesForPrediction int     `json:"maxDecodeTokenSamplesForPrediction" doc:"accepted for upstream configs; TPOT is learned per request from its usage" default:"0"`
	SLOBufferFactor                    float64 `json:"sloBufferFactor" doc:"headroom = sloBufferFactor × SLO − predicted (below 1 keeps a margin); > 0" default:"1"`
	ContextTTL                         string  `json:"contextTTL" doc:"requests unfinished after this long are dropped from the books (Go duration)" default:"5m"`
	StreamingMode                      bool    `json:"streamingMode" doc:"learn TTFT from the first response chunk (streamed responses); false learns it from the whole response, as upstream does" default:"false"`
	EndpointRoleLabel                  string  `json:"endpointRoleLabel" doc:"accepted for upstream configs; the model needs no roles (a disaggregated request is learned on its decode endpoint)" default:""`
	PredictInProduce                   bool    `json:"predictInProduce" doc:"predict for every candidate; false only trains" default:"true"`
	PrefixMatchInfoProducerName        string  `json:"prefixMatchInfoProducerName" doc:"the plugin whose prefix matches tell how much of the prompt each endpoint must prefill; when the default is not configured, the whole prompt" default:"approx-prefix-cache-producer"`
}

// Prediction is what Producer predicts for one candidate endpoint, in ms.
type Prediction struct {
	TTFT, TPOT                 float64
	TTFTHeadroom, TPOTHeadroom float64 // sloBufferFactor × SLO − predicted; −predicted without an SLO
	Dispatched                 int     // this EPP's requests in flight there
}

// deficit ranks which objectives p misses, the least severe first: 0
// meets both, 1 misses only TPOT, 2 only TTFT (the one users feel), 3 both.
func (p Prediction) deficit() int {
	d := 0
	if p.TPOTHeadroom < 0 {
		d = 1
	}
	if p.TTFTHeadroom < 0 {
		d += 2
	}
	return d
}

// Producer is the predicted-latency-producer of GIE and llm-d, with the
// model in process: two online ridge regressions, learned from this EPP's
// own requests, predict each candidate's TTFT from the prompt tokens it
// must prefill (the part it does not hold), its scraped waiting and
// running requests and KV-cache usage and the prompt tokens this EPP sent
// it that have not begun to answer, and its TPOT from its running and
// waiting requests, KV usage and the prompt length. They need 32 answered
// requests before they predict; until then latency-scorer falls back to
// its composite score, as upstream's does without its sidecar. Headroom is
// taken against the x-slo-ttft-ms / x-slo-tpot-ms request headers (or
// llm-d's x-llm-d-slo-*); a dimension without its header has headroom 0
// when the other has one, and both are −prediction when neither does.
type Producer struct {
	name      scheduler.TypedName
	params    ProducerParams
	ttft      *regression
	tpot      *regression
	books     inflight.Counter // requests in flight and their prompt tokens not yet prefilled
	source    prefix.Source
	clock     scheduler.Clock
	telemetry telemetry
}

var (
	_ scheduler.Producer         = (*Producer)(nil)
	_ scheduler.Resolver         = (*Producer)(nil)
	_ scheduler.PreRequest       = (*Producer)(nil)
	_ scheduler.ResponseChunk    = (*Producer)(nil)
	_ scheduler.ResponseComplete = (*Producer)(nil)
	_ scheduler.Runnable         = (*Producer)(nil)
	_ scheduler.StateDumper      = (*Producer)(nil)
)

// The features of the two models; see Producer.
const (
	ttftFeatures = 6
	tpotFeatures = 5
)

// ProducerFactory builds a Producer from config.
func ProducerFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	p := ProducerParams{SamplingMean: 1000, SLOBufferFactor: 1, ContextTTL: "5m", PredictInProduce: true,
		PrefixMatchInfoProducerName: "approx-prefix-cache-producer"}
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	var errs []error
	if !(p.SamplingMean > 0) {
		errs = append(errs, fmt.Errorf("samplingMean: must be > 0, got %v", p.SamplingMean))
	}
	if p.MaxDecodeTokenSamplesForPrediction < 0 {
		errs = append(errs, fmt.Errorf("maxDecodeTokenSamplesForPrediction: must be >= 0, got %d", p.MaxDecodeTokenSamplesForPrediction))
	}
	if !(p.SLOBufferFactor > 0) {
		errs = append(errs, fmt.Errorf("sloBufferFactor: must be > 0, got %v", p.SLOBufferFactor))
	}
	ttl, err := time.ParseDuration(p.ContextTTL)
	if err != nil || ttl <= 0 {
		errs = append(errs, fmt.Errorf("contextTTL: must be a Go duration > 0, got %q", p.ContextTTL))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	pr := &Producer{
		name: scheduler.TypedName{Type: ProducerType, Name: name}, params: p,
		ttft: newRegression(ttftFeatures), tpot: newRegression(tpotFeatures),
		clock: scheduler.RealClock{},
	}
	if h != nil && h.Clock != nil {
		pr.clock = h.Clock
	}
	if h != nil {
		if pr.telemetry, err = newTelemetry(h.Registerer); err != nil {
			return nil, err
		}
	}
	pr.books = inflight.NewCounter(h, name, ttl, pr.uncachedPrompt)
	return pr, nil
}

// ProducerRegistration describes the plugin type for the registry.
func ProducerRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    ProducerType,
		Factory: ProducerFactory,
		Params:  ProducerParams{},
		Summary: "Predicts each endpoint's TTFT and TPOT with models learned in process from this EPP's own requests (no sidecar), and their headroom against the request's SLO headers.",
	}
}

// TypedName implements scheduler.Plugin.
func (p *Producer) TypedName() scheduler.TypedName { return p.name }

// Resolve implements scheduler.Resolver: it finds the prefix source (the
// default one may be absent; a named one must exist).
func (p *Producer) Resolve(h *scheduler.Handle) error {
	src, err := prefix.LookupOptional(h, p.params.PrefixMatchInfoProducerName)
	p.source = src
	return err
}

// note is one request's predictions and what its training needs; notes of
// several producers chain under one key.
type note struct {
	owner            *Producer
	preds            map[string]Prediction // by HostPort; nil when the models are not ready
	sent, first      time.Time
	ttftX, tpotX     []float64
	ttftSLO, tpotSLO float64
	model, target    string // the metrics' labels
	next             *note
}

var noteKey = scheduler.NewKey[*note]("predicted-latency")

// noteOf finds p's note in state.
func (p *Producer) noteOf(state *scheduler.State) *note {
	n, _ := noteKey.Get(state)
	for ; n != nil; n = n.next {
		if n.owner == p {
			return n
		}
	}
	return nil
}

// Predictions returns the predictions Produce made for the request owning
// state, by endpoint HostPort; false when the models were not ready, or for
// a nil producer (a plugin not resolved).
func (p *Producer) Predictions(state *scheduler.State) (map[string]Prediction, bool) {
	if p == nil {
		return nil, false
	}
	if n := p.noteOf(state); n != nil && n.preds != nil {
		return n.preds, true
	}
	return nil, false
}

// Produce implements scheduler.Producer: it predicts for every candidate.
func (p *Producer) Produce(_ context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) {
	if state == nil || req == nil {
		return
	}
	head, _ := noteKey.Get(state)
	n := &note{owner: p, ttftSLO: sloHeader(req, ttftSLOHeaders), tpotSLO: sloHeader(req, tpotSLOHeaders),
		model: req.IncomingModel, target: req.Model, next: head}
	noteKey.Set(state, n)
	if !p.params.PredictInProduce {
		return
	}
	if t := p.telemetry; t.ttftPrediction != nil {
		start := time.Now() // wall time, whatever clock the producer runs on
		defer func() {
			d := time.Since(start).Seconds()
			t.ttftPrediction.WithLabelValues(n.model, n.target).Observe(d)
			t.tpotPrediction.WithLabelValues(n.model, n.target).Observe(d)
			t.setLast(n, "ttft_prediction_duration", d)
			t.setLast(n, "tpot_prediction_duration", d)
		}()
	}
	var preds map[string]Prediction // made once the models answer: until trained they do not
	for _, e := range eps {
		ttft, ok1 := p.ttft.predict(p.ttftFeatures(state, req, e))
		tpot, ok2 := p.tpot.predict(p.tpotFeatures(req, e))
		if !ok1 || !ok2 {
			return // not ready: no predictions at all
		}
		if preds == nil {
			preds = make(map[string]Prediction, len(eps))
		}
		requests, _ := p.books.Tracker().Of(e.HostPort)
		preds[e.HostPort] = Prediction{
			TTFT: ttft, TPOT: tpot, Dispatched: requests,
			TTFTHeadroom: p.headroom(n.ttftSLO, ttft, n), TPOTHeadroom: p.headroom(n.tpotSLO, tpot, n),
		}
	}
	n.preds = preds
}

// headroom is sloBufferFactor × slo − predicted. A request with no SLO at
// all gets −predicted in both (so the lowest predicted latency ranks
// first); one with only the other SLO gets 0 here (nothing to miss).
func (p *Producer) headroom(slo, predicted float64, n *note) float64 {
	switch {
	case slo > 0:
		return p.params.SLOBufferFactor*slo - predicted
	case n.ttftSLO > 0 || n.tpotSLO > 0:
		return 0
	default:
		return -predicted
	}
}

// HasSLO reports whether the request owning state carries an SLO header.
func (p *Producer) HasSLO(state *scheduler.State) bool {
	if p == nil {
		return false
	}
	n := p.noteOf(state)
	return n != nil && (n.ttftSLO > 0 || n.tpotSLO > 0)
}

// PredictedTTFT returns the TTFT predicted for the request owning state
// on the endpoint at hostPort, in ms; false without a prediction. It is
// what prefix-cache-affinity-filter's latencyPredictor TTFT source reads.
func (p *Producer) PredictedTTFT(state *scheduler.State, hostPort string) (float64, bool) {
	if n := p.noteOf(state); n != nil && n.preds != nil {
		pr, ok := n.preds[hostPort]
		return pr.TTFT, ok
	}
	return 0, false
}

// ttftFeatures: 1, prompt tokens e must prefill (thousands), its waiting
// and running requests, KV usage, and this EPP's prompt tokens sent there
// and not yet answered (thousands).
func (p *Producer) ttftFeatures(state *scheduler.State, req *scheduler.Request, e *endpoint.Endpoint) []float64 {
	m := e.Metrics()
	_, pending := p.books.Tracker().Of(e.HostPort)
	return []float64{1, float64(p.uncachedPrompt(state, req, e)) / 1000, float64(m.WaitingQueueSize),
		float64(m.RunningRequestsSize), m.KVCacheUsagePercent, float64(pending) / 1000}
}

// tpotFeatures: 1, e's running and waiting requests, KV usage, and the
// prompt's tokens (thousands).
func (p *Producer) tpotFeatures(req *scheduler.Request, e *endpoint.Endpoint) []float64 {
	m := e.Metrics()
	return []float64{1, float64(m.RunningRequestsSize), float64(m.WaitingQueueSize), m.KVCacheUsagePercent,
		float64(inflight.PromptTokens(nil, req, e)) / 1000}
}

// uncachedPrompt is the part of the prompt e does not hold.
func (p *Producer) uncachedPrompt(state *scheduler.State, req *scheduler.Request, e *endpoint.Endpoint) int {
	return prefix.MatchOf(p.source, state).Uncached(inflight.PromptTokens(state, req, e), e)
}

// PreRequest records the features the target was chosen with, for
// training, and enters the request in the books.
func (p *Producer) PreRequest(ctx context.Context, state *scheduler.State, req *scheduler.Request, result *scheduler.Result) {
	target := inflight.PrimaryTarget(result)
	n := p.noteOf(state)
	if target == nil || n == nil {
		return
	}
	n.sent = p.clock.Now()
	n.ttftX, n.tpotX = p.ttftFeatures(state, req, target), p.tpotFeatures(req, target)
	p.books.PreRequest(ctx, state, req, result)
	if pr, ok := n.preds[target.HostPort]; ok && p.telemetry.predictedTTFT != nil {
		p.telemetry.predictedTTFT.WithLabelValues(n.model, n.target).Observe(pr.TTFT / 1000)
		p.telemetry.predictedTPOT.WithLabelValues(n.model, n.target).Observe(pr.TPOT / 1000)
		p.telemetry.setLast(n, "predicted_ttft", pr.TTFT/1000)
		p.telemetry.setLast(n, "predicted_tpot", pr.TPOT/1000)
	}
}

// ResponseChunk takes the first non-empty chunk as the first token: the
// prompt tokens leave the books and, streaming, TTFT is learned.
func (p *Producer) ResponseChunk(_ context.Context, state *scheduler.State, _ *scheduler.Request, resp *scheduler.Response, chunk []byte) {
	if len(chunk) == 0 || resp.BodyBytes != len(chunk) {
		return
	}
	n := p.noteOf(state)
	if n == nil || n.sent.IsZero() {
		return
	}
	n.first = p.clock.Now()
	p.books.Tracker().SetTokens(state, 0)
	if p.params.StreamingMode {
		p.ttft.observe(n.ttftX, ms(n.first.Sub(n.sent)))
	}
}

// ResponseComplete learns TPOT (and, not streaming, TTFT) from a
// successful answer and releases the request.
func (p *Producer) ResponseComplete(ctx context.Context, state *scheduler.State, req *scheduler.Request, resp *scheduler.Response) {
	defer p.books.ResponseComplete(ctx, state, req, resp)
	n := p.noteOf(state)
	if n == nil || n.sent.IsZero() || resp.Cancelled || resp.StatusCode >= 300 {
		return
	}
	now := p.clock.Now()
	ttft := ms(now.Sub(n.sent))
	if p.params.StreamingMode {
		if n.first.IsZero() {
			return // no token came: nothing to learn
		}
		ttft = ms(n.first.Sub(n.sent))
	} else {
		p.ttft.observe(n.ttftX, ttft)
	}
	p.observed("ttft", n, n.ttftSLO, ttft)
	if out := resp.Usage.CompletionTokens; resp.UsageKnown && out > 1 && !n.first.IsZero() {
		tpot := ms(now.Sub(n.first)) / float64(out-1)
		p.tpot.observe(n.tpotX, tpot)
		p.observed("tpot", n, n.tpotSLO, tpot)
	}
}

// observed records an answer's TTFT or TPOT (kind; ms) in the
// consolidated gauge and, when its SLO headers set an objective, the
// objective and whether it was missed, counting a miss.
func (p *Producer) observed(kind string, n *note, slo, actual float64) {
	t := p.telemetry
	t.setLast(n, kind, actual/1000)
	if slo <= 0 {
		return
	}
	missed := 0.0
	if actual > slo {
		missed = 1
		if t.violations != nil {
			t.violations.WithLabelValues(n.model, n.target, kind).Inc()
		}
	}
	t.setLast(n, kind+"_slo_threshold", slo/1000)
	t.setLast(n, kind+"_slo_violation", missed)
}

// Start sweeps requests the proxy never finished.
func (p *Producer) Start(ctx context.Context) error { return p.books.Start(ctx) }

// State is what Producer shows at /debug/plugins/state.
type State struct {
	TTFTSamples   int            `json:"ttftSamples"`
	TPOTSamples   int            `json:"tpotSamples"`
	Ready         bool           `json:"ready"`
	InFlight      inflight.State `json:"inFlight"`
	StreamingMode bool           `json:"streamingMode"`
}

// DumpState implements scheduler.StateDumper.
func (p *Producer) DumpState() any {
	_, ttftReady := p.ttft.predict(make([]float64, ttftFeatures))
	_, tpotReady := p.tpot.predict(make([]float64, tpotFeatures))
	st := State{TTFTSamples: p.ttft.samples(), TPOTSamples: p.tpot.samples(), Ready: ttftReady && tpotReady,
		StreamingMode: p.params.StreamingMode}
	if d, ok := p.books.DumpState().(inflight.State); ok {
		st.InFlight = d
	}
	return st
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// sloHeader returns the first of the headers holding a positive number of
// milliseconds, 0 when none does.
func sloHeader(req *scheduler.Request, names []string) float64 {
	for _, h := range names {
		if v, err := strconv.ParseFloat(strings.TrimSpace(req.Header(h)), 64); err == nil && v > 0 {
			return v
		}
	}
	return 0
}

// lookupProducer finds the predicted-latency-producer called name.
func lookupProducer(h *scheduler.Handle, name string) (*Producer, error) {
	if h == nil {
		return nil, errors.New("latencyPredictionInfoProducerName: no plugin handle to resolve it with")
	}
	pl, ok := h.Plugin(name)
	if !ok && name == ProducerType {
		// The default names the producer, or GIE v1.5.0's scorer, which
		// predicts too, when that is what the config lists.
		pl, ok = h.Plugin(MonolithType)
	}
	if !ok {
		return nil, fmt.Errorf("latencyPredictionInfoProducerName: no plugin named %q in the config (list `- type: %s`)", name, ProducerType)
	}
	switch p := pl.(type) {
	case *Producer:
		return p, nil
	case *Monolith: // GIE v1.5.0's scorer predicts too
		return p.Producer, nil
	}
	return nil, fmt.Errorf("latencyPredictionInfoProducerName: plugin %q (type %q) is not a %s", name, pl.TypedName().Type, ProducerType)
}
