package metrics

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

// processCPU is the CPU time (user + system) this process has used.
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// twoPages returns the vLLM page and a variant whose waiting queue differs,
// so alternating them forces a real parse on every scrape.
func twoPages(tb testing.TB) [2][]byte {
	a := readPage(tb, "vllm.txt")
	b := bytes.Replace(a, []byte(`model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0`),
		[]byte(`model_name="meta-llama/Llama-3.1-8B-Instruct"} 4.0`), 1)
	if bytes.Equal(a, b) {
		tb.Fatal("page variant is identical")
	}
	return [2][]byte{a, b}
}

// BenchmarkScrape measures one scrape of a realistic vLLM page (~220 series
// with histograms, 28 KB). The http variants include the loopback GET and
// therefore the in-process test server's CPU too (proc-cpu-ns/op); the apply
// variants are filter + expfmt parse + extract + publish alone. "changing"
// alternates two pages so every scrape parses; "unchanged" is the steady
// state of an idle server, where the parse is skipped. The http servers
// ignore name[] queries, except in http/narrow-changing, where the server
// answers with only the families asked for (1.5 KB), as Prometheus client
// libraries do (narrow.go).
func BenchmarkScrape(b *testing.B) {
	pages := twoPages(b)
	for _, mode := range []string{"changing", "unchanged", "narrow-changing"} {
		b.Run("http/"+mode, func(b *testing.B) {
			var n atomic.Int64
			var narrowed [2][]byte // filtered once, so the server costs the same either way
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := 0
				if mode != "unchanged" {
					i = int(n.Add(1) % 2)
				}
				if names := r.URL.Query()["name[]"]; mode == "narrow-changing" && len(names) > 0 {
					if narrowed[i] == nil {
						narrowed[i] = onlyFamilies(pages[i], names)
					}
					_, _ = w.Write(narrowed[i])
					return
				}
				_, _ = w.Write(pages[i])
			}))
			defer srv.Close()
			tg := benchTarget(b, srv.Listener.Addr().String())
			ctx := context.Background()
			tg.poll(ctx)
			tg.poll(ctx) // the narrow probe, if any
			runMeasured(b, func() { tg.poll(ctx) })
			if tg.failing {
				b.Fatal("scrape failing")
			}
			if narrow := tg.narrow == narrowOn; narrow != (mode == "narrow-changing") {
				b.Fatalf("narrow pages: %v", narrow)
			}
		})
		b.Run("apply/"+mode, func(b *testing.B) {
			tg := benchTarget(b, "127.0.0.1:1")
			in, narrow := pages, mode == "narrow-changing"
			if narrow {
				tg.narrow = narrowOn
				for i := range in {
					in[i] = onlyFamilies(pages[i], tg.eng.families)
				}
			}
			i := 0
			runMeasured(b, func() {
				if mode != "unchanged" {
					i ^= 1
				}
				if _, err := tg.apply(in[i], narrow, time.Now()); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

func benchTarget(b testing.TB, addr string) *target {
	return testTarget(b, addr, nil)
}

// testTarget is a scrape target for addr whose engine the labels choose.
func testTarget(b testing.TB, addr string, labels map[string]string) *target {
	b.Helper()
	st := newStoreWith(specFor(b, "a", addr, labels))
	s, err := New(st, Options{Log: logr.Discard()})
	if err != nil {
		b.Fatal(err)
	}
	t := s.newTarget(st.Snapshot()[0])
	b.Cleanup(func() {
		if t.conn != nil {
			t.conn.close()
		}
	})
	return t
}

// runMeasured runs op b.N times and reports process CPU per op.
func runMeasured(b *testing.B, op func()) {
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	for range b.N {
		op()
	}
	b.StopTimer()
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "proc-cpu-ns/op")
}
