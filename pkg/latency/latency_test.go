package latency

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
)

var ctx = context.Background()

// testClock is moved by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func endpoints(queues ...int) []*endpoint.Endpoint {
	out := make([]*endpoint.Endpoint, len(queues))
	for i, q := range queues {
		e := endpoint.New(endpoint.Spec{Name: fmt.Sprintf("ep-%d", i), Namespace: "ns", Address: fmt.Sprintf("10.2.0.%d", i+1), Port: 8000})
		e.SetMetrics(&endpoint.Metrics{WaitingQueueSize: q, RunningRequestsSize: 4, KVCacheUsagePercent: 0.3, UpdateTime: time.Now()})
		out[i] = e
	}
	return out
}

func chat(promptBytes int, headers map[string]string) *scheduler.Request {
	raw := fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":%q}]}`, strings.Repeat("a", promptBytes))
	body, err := request.Parse(request.ChatCompletions, []byte(raw))
	if err != nil {
		panic(err)
	}
	h := map[string]string{":path": "/v1/chat/completions"}
	for k, v := range headers {
		h[k] = v
	}
	return &scheduler.Request{ID: "r", Model: "m", Body: body, Headers: h}
}

func result(target *endpoint.Endpoint) *scheduler.Result {
	return &scheduler.Result{Primary: "default", Profiles: map[string]*scheduler.ProfileResult{"default": {Targets: []*endpoint.Endpoint{target}}}}
}

func newProducer(t *testing.T, raw string, clock scheduler.Clock) *Producer {
	t.Helper()
	p, err := ProducerFactory(ProducerType, json.RawMessage(raw), &scheduler.Handle{Log: logr.Discard(), Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	return p.(*Producer)
}

// serve plays one request through the producer's hooks: the endpoint
// answers its first token after ttft and then 10 tokens at tpot each.
func serve(p *Producer, clock *testClock, eps []*endpoint.Endpoint, target int, req *scheduler.Request, ttft, tpot time.Duration) {
	st := scheduler.NewState(1, clock.Now())
	p.Produce(ctx, st, req, eps)
	p.PreRequest(ctx, st, req, result(eps[target]))
	clock.Advance(ttft)
	chunk := []byte("data: {}\n\n")
	resp := &scheduler.Response{StatusCode: 200, BodyBytes: len(chunk)}
	p.ResponseChunk(ctx, st, req, resp, chunk)
	clock.Advance(9 * tpot)
	resp.UsageKnown, resp.Usage.CompletionTokens = true, 10
	p.ResponseComplete(ctx, st, req, resp)
}

// TestProducerLearnsFromItsRequests: after enough answered requests the
// producer predicts a TTFT that grows with the queue and the prompt, a
// TPOT near the observed one, and headroom against the SLO headers.
func TestProducerLearnsFromItsRequests(t *testing.T) {
	t.Parallel()
	clock := &testClock{now: time.Unix(1000, 0)}
	p := newProducer(t, `{"streamingMode":true}`, clock)
	for i := range 200 {
		q, prompt := i%7, 400+(i%5)*800
		eps := endpoints(q)
		law := time.Duration(15+8*q) * time.Millisecond        // 15 ms + 8 ms per queued request
		law += time.Duration(prompt/4) * 20 * time.Microsecond // 20 µs per prompt token
		serve(p, clock, eps, 0, chat(prompt, nil), law, 25*time.Millisecond)
	}
	if st := p.DumpState().(State); !st.Ready || st.TTFTSamples != 200 || st.TPOTSamples != 200 || st.InFlight.Requests != 0 {
		t.Fatalf("state %+v: want ready, 200 samples each, nothing in flight", st)
	}
	eps := endpoints(0, 6)
	st := scheduler.NewState(2, clock.Now())
	p.Produce(ctx, st, chat(2000, map[string]string{"x-slo-ttft-ms": "100", "x-llm-d-slo-tpot-ms": "40"}), eps)
	preds, ok := p.Predictions(st)
	if !ok {
		t.Fatal("no predictions after 200 requests")
	}
	idle, busy := preds[eps[0].HostPort], preds[eps[1].HostPort]
	// 2,000 bytes = 500 tokens: 15 + 10 = 25 ms idle, + 48 ms with 6 queued.
	if idle.TTFT < 20 || idle.TTFT > 30 || busy.TTFT < 66 || busy.TTFT > 80 {
		t.Errorf("TTFT predictions %.1f (idle) and %.1f (6 queued), want about 25 and 73", idle.TTFT, busy.TTFT)
	}
	if idle.TPOT < 23 || idle.TPOT > 27 {
		t.Errorf("TPOT prediction %.1f, want about 25", idle.TPOT)
	}
	if d := idle.TTFTHeadroom - (100 - idle.TTFT); d*d > 1e-9 || idle.TPOTHeadroom != 40-idle.TPOT {
		t.Errorf("headroom %+v, want SLO − prediction", idle)
	}
}

func TestProducerNotReadyAndParams(t *testing.T) {
	t.Parallel()
	p := newProducer(t, "", &testClock{now: time.Unix(1, 0)})
	st := scheduler.NewState(1, time.Unix(1, 0))
	p.Produce(ctx, st, chat(100, nil), endpoints(0))
	if _, ok := p.Predictions(st); ok {
		t.Error("predictions before any training")
	}
	for raw, want := range map[string]string{
		`{"sloBufferFactor":0}`:                     "sloBufferFactor: must be > 0",
		`{"samplingMean":-1}`:                       "samplingMean: must be > 0",
		`{"maxDecodeTokenSamplesForPrediction":-1}`: "maxDecodeTokenSamplesForPrediction: must be >= 0",
		`{"contextTTL":"soon"}`:                     `contextTTL: must be a Go duration > 0, got "soon"`,
		`{"predictionServerURL":"x"}`:               `unknown field "predictionServerURL"`,
	} {
		pl, err := ProducerFactory("x", json.RawMessage(raw), nil)
		if err == nil || pl != nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: plugin %v, err %v; want an error containing %q", raw, pl, err, want)
		}
	}
}
