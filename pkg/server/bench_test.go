package server_test

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scorers"
	"github.com/openepp/openepp/pkg/server"
)

// BenchmarkRoundTrip measures one ext_proc request round trip (request
// headers and one 1 KiB body chunk, then the decision, then the stream's
// end) over loopback plaintext gRPC, with the same client code against:
//
//   - server=noop: extproc.NoopServer, the transport floor;
//   - server=epp-random: our server, random picker, 100 endpoints;
//   - server=epp-default: our server with the default scoring
//     configuration (queue 2, kv-cache 2, prefix 3, max-score), 100
//     endpoints;
//   - server=epp-traced: epp-random with request tracing as the EPP's
//     default (a tenth of new traces sampled, spans batched to an exporter
//     that drops them);
//   - ratio=...: the floor and one of ours (or epp-traced and epp-random,
//     for what tracing costs) interleaved iteration by
//     iteration (so both see the same machine load), reporting the ratio of
//     our median latency to the floor's (target: at most 1.5); ns/op there
//     is per pair.
//
// Every sub-benchmark also reports its median (p50-ns) and 99th percentile.
func BenchmarkRoundTrip(b *testing.B) {
	floor := startNoop(b)
	random := start(b, setup{endpoints: endpointsAt(100), picker: randomPicker(1), scorers: []scheduler.WeightedScorer{}, bare: true})
	ws, producer := defaultScoring(b)
	deflt := start(b, setup{endpoints: endpointsAt(100), scorers: ws, plugins: []scheduler.Plugin{producer}, bare: true})
	traced := start(b, setup{endpoints: endpointsAt(100), picker: randomPicker(1), scorers: []scheduler.WeightedScorer{}, bare: true,
		server: server.Options{Tracer: benchTracer(b)}})
	req := benchRequest()
	clients := []struct {
		name string
		c    *extproc.Client
	}{{"noop", floor}, {"epp-random", random.client}, {"epp-default", deflt.client}, {"epp-traced", traced.client}}
	for _, c := range clients {
		b.Run("server="+c.name, func(b *testing.B) {
			durs := make([]time.Duration, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				durs[i] = timedRoundTrip(b, c.c, req)
			}
			b.StopTimer()
			reportQuantiles(b, "", durs)
		})
	}
	pairs := []struct{ ours, base int }{{1, 0}, {2, 0}, {3, 1}}
	for _, p := range pairs {
		c, floor := clients[p.ours], clients[p.base]
		b.Run("ratio="+c.name+"/"+floor.name, func(b *testing.B) {
			ours, base := make([]time.Duration, b.N), make([]time.Duration, b.N)
			b.ResetTimer()
			for i := range b.N {
				if i%2 == 0 {
					base[i], ours[i] = timedRoundTrip(b, floor.c, req), timedRoundTrip(b, c.c, req)
				} else {
					ours[i], base[i] = timedRoundTrip(b, c.c, req), timedRoundTrip(b, floor.c, req)
				}
			}
			b.StopTimer()
			reportQuantiles(b, "floor-", base)
			reportQuantiles(b, "epp-", ours)
			b.ReportMetric(float64(quantile(ours, 0.5))/float64(quantile(base, 0.5)), "p50-ratio")
		})
	}
}

// benchTracer traces as the EPP does by default (a tenth of new traces
// sampled, batched export), into an exporter that drops the spans.
func benchTracer(b *testing.B) trace.Tracer {
	p := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1))),
		sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	b.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p.Tracer("bench")
}

// benchRequest is a completion with a 1 KiB body sent in one chunk, with the
// headers Envoy sends.
func benchRequest() extproc.Request {
	prompt := strings.Repeat("benchmark prompt text ", 64)
	body := completion(prompt[:1024-len(completion(""))])
	req := post("/v1/completions", body, "x-request-id", "bench-request")
	req.ChunkSize = len(body)
	return req
}

func timedRoundTrip(b *testing.B, c *extproc.Client, req extproc.Request) time.Duration {
	start := time.Now()
	d, err := c.RoundTrip(context.Background(), req)
	took := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	if len(d.Endpoints) != 1 {
		b.Fatalf("no destination: %+v", d)
	}
	return took
}

// startNoop serves extproc.NoopServer on 127.0.0.1 with gRPC defaults and
// returns a plaintext client.
func startNoop(b *testing.B) *extproc.Client {
	b.Helper()
	g := grpc.NewServer(server.TransportOptions()...)
	extprocv3.RegisterExternalProcessorServer(g, &extproc.NoopServer{Destination: "10.0.0.1:8000"})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- server.Serve(ctx, g, lis, time.Second) }()
	c := dial(b, lis.Addr().String(), false)
	b.Cleanup(func() {
		_ = c.Close()
		cancel()
		if err := <-served; err != nil {
			b.Errorf("serve: %v", err)
		}
	})
	return c
}

// defaultScoring builds the default configuration's scorers from real
// plugins: queue-scorer 2, kv-cache-utilization-scorer 2, prefix-cache-scorer
// 3 fed by an approx-prefix-cache-producer.
func defaultScoring(tb testing.TB) ([]scheduler.WeightedScorer, scheduler.Plugin) {
	tb.Helper()
	producer, err := prefix.NewProducer(prefix.ProducerType, prefix.DefaultParams(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return []scheduler.WeightedScorer{
		{Scorer: scorers.NewQueueDepth(scorers.QueueDepthType), Weight: 2},
		{Scorer: scorers.NewKVCacheUtilization(scorers.KVCacheUtilizationType), Weight: 2},
		{Scorer: scorers.NewPrefixCache(scorers.PrefixCacheType, scorers.DefaultPrefixCacheParams(), producer), Weight: 3},
	}, producer
}

// reportQuantiles reports the median and 99th percentile of durs.
func reportQuantiles(b *testing.B, prefix string, durs []time.Duration) {
	b.ReportMetric(float64(quantile(durs, 0.5)), prefix+"p50-ns")
	b.ReportMetric(float64(quantile(durs, 0.99)), prefix+"p99-ns")
}

// quantile returns the q-quantile of durs (nearest rank); it sorts a copy.
func quantile(durs []time.Duration, q float64) time.Duration {
	if len(durs) == 0 {
		return 0
	}
	s := slices.Clone(durs)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// BenchmarkStreamedResponse measures a whole streamed completion through
// ext_proc: the request round trip, then 100 server-sent events of a
// streamed completion (the last with usage), each a body chunk the
// processor must answer before the proxy forwards it, against the
// transport floor (extproc.NoopServer, which echoes every chunk) and our
// server with the default scoring, interleaved as in BenchmarkRoundTrip.
// chunk-ns is the added time per response chunk.
func BenchmarkStreamedResponse(b *testing.B) {
	floor := startNoop(b)
	ws, producer := defaultScoring(b)
	ours := start(b, setup{endpoints: endpointsAt(100), scorers: ws, plugins: []scheduler.Plugin{producer}, bare: true})
	req, resp := benchRequest(), benchStream(100)
	play := func(c *extproc.Client) time.Duration {
		start := time.Now()
		s, err := c.Open(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		if _, err := s.SendRequest(context.Background(), req); err != nil {
			b.Fatal(err)
		}
		if _, err := s.PlayResponse(context.Background(), resp); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	epp, base := make([]time.Duration, b.N), make([]time.Duration, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%2 == 0 {
			base[i], epp[i] = play(floor), play(ours.client)
		} else {
			epp[i], base[i] = play(ours.client), play(floor)
		}
	}
	b.StopTimer()
	reportQuantiles(b, "floor-", base)
	reportQuantiles(b, "epp-", epp)
	b.ReportMetric(float64(quantile(epp, 0.5)-quantile(base, 0.5))/100, "chunk-ns")
}

// benchStream is a streamed completion of n events of equal size, the last
// carrying usage, as vLLM sends them with include_usage.
func benchStream(n int) extproc.Response {
	const size = 200
	event := func(payload string) string {
		e := "data: " + payload
		return e + strings.Repeat(" ", size-len(e)-2) + "\n\n"
	}
	var body strings.Builder
	for range n - 1 {
		body.WriteString(event(`{"id":"cmpl-1","object":"text_completion","model":"m","choices":[{"index":0,"text":" token","finish_reason":null}],"usage":null}`))
	}
	body.WriteString(event(`{"id":"cmpl-1","object":"text_completion","model":"m","choices":[],"usage":{"prompt_tokens":256,"completion_tokens":99}}`))
	return extproc.Response{Status: 200, Headers: map[string][]string{"content-type": {"text/event-stream"}},
		Body: []byte(body.String()), ChunkSize: size}
}
