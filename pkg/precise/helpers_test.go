package precise

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
	"github.com/openepp/openepp/pkg/sim"
)

// startSim starts a simulated vLLM on a free loopback port, publishing its
// KV events to kvEndpoint when that is set.
func startSim(t *testing.T, kvEndpoint string) (*sim.Instance, *endpoint.Endpoint) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := sim.Config{
		Address: "127.0.0.1", LoRAs: []string{"sql-lora"},
		Capacity: sim.Capacity{MaxNumSeqs: 8, KVCacheBlocks: 512, BlockSize: 16, MaxLoRAs: 2},
		Latency:  sim.Latency{InterTokenLatency: sim.Ptr(time.Millisecond), TimeToFirstToken: sim.Ptr(time.Millisecond)},
	}
	var pub *sim.KVEventPublisher
	if kvEndpoint != "" {
		var err error
		if pub, err = sim.NewKVEventPublisher(ctx, kvEndpoint, false); err != nil {
			t.Fatal(err)
		}
		cfg.KVEvents = pub
	}
	inst, err := sim.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start simulator: %v", err)
	}
	if pub != nil {
		pub.SetTopic(sim.KVEventTopic(inst.HostPort(), inst.Model()))
		go pub.Run(ctx, nil)
	}
	t.Cleanup(func() {
		_ = inst.Close()
		cancel()
	})
	return inst, endpoint.New(endpoint.Spec{Name: inst.HostPort(), Address: "127.0.0.1", Port: inst.Port()})
}

// chatRequest parses a chat completions body for model.
func chatRequest(t *testing.T, model, system, user string) *scheduler.Request {
	t.Helper()
	return saltedChatRequest(t, model, "", system, user)
}

// saltedChatRequest is chatRequest with a cache_salt ("" for none).
func saltedChatRequest(t *testing.T, model, salt, system, user string) *scheduler.Request {
	t.Helper()
	body := map[string]any{"model": model, "max_tokens": 2, "messages": []map[string]string{
		{"role": "system", "content": system}, {"role": "user", "content": user},
	}}
	if salt != "" {
		body["cache_salt"] = salt
	}
	raw, _ := json.Marshal(body)
	b, err := request.Parse(request.ChatCompletions, raw)
	if err != nil {
		t.Fatal(err)
	}
	return &scheduler.Request{ID: "r", Model: model, IncomingModel: model, Body: b}
}

func newTokens(t *testing.T, params string, reg prometheus.Registerer) *TokenProducer {
	t.Helper()
	pl, err := TokenProducerFactory("token-producer", json.RawMessage(params), &scheduler.Handle{Log: logr.Discard(), Registerer: reg})
	if err != nil {
		t.Fatalf("token-producer %s: %v", params, err)
	}
	return pl.(*TokenProducer)
}

func state() *scheduler.State { return plugintest.State(1) }
