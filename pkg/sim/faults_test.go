package sim

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestMetricsFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		faults Faults
		check  func(t *testing.T, status int, body string, took time.Duration)
	}{
		{name: "slow", faults: Faults{MetricsDelay: 300 * time.Millisecond},
			check: func(t *testing.T, status int, body string, took time.Duration) {
				if status != 200 || took < 300*time.Millisecond {
					t.Fatalf("status %d after %v, want 200 after ≥ 300ms", status, took)
				}
				parsePage(t, body)
			}},
		{name: "5xx", faults: Faults{MetricsStatus: 503},
			check: func(t *testing.T, status int, _ string, _ time.Duration) {
				if status != 503 {
					t.Fatalf("status %d, want 503", status)
				}
			}},
		{name: "garbage", faults: Faults{MetricsGarbage: true},
			check: func(t *testing.T, status int, body string, _ time.Duration) {
				p := expfmt.NewTextParser(model.UTF8Validation)
				if _, err := p.TextToMetricFamilies(strings.NewReader(body)); status != 200 || err == nil {
					t.Fatalf("status %d, parse error %v; want 200 and a parse error", status, err)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := quick()
			cfg.Faults = tc.faults
			inst := start(t, cfg)
			c := client(t)
			began := time.Now()
			status, body := scrapeText(t, c, inst)
			tc.check(t, status, body, time.Since(began))
			// Clearing the fault restores a healthy page.
			if err := inst.SetFaults(Faults{}); err != nil {
				t.Fatal(err)
			}
			if status, body := scrapeText(t, c, inst); status != 200 {
				t.Fatalf("after clearing: status %d", status)
			} else {
				parsePage(t, body)
			}
		})
	}
}

func TestMetricsHang(t *testing.T) {
	t.Parallel()
	cfg := quick()
	cfg.Faults.MetricsHang = true
	inst, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := client(t)
	c.Timeout = 200 * time.Millisecond
	began := time.Now()
	if _, err := c.Get(inst.URL() + "/metrics"); err == nil || time.Since(began) < 200*time.Millisecond {
		t.Fatalf("hanging scrape returned %v after %v", err, time.Since(began))
	}
	// A scrape still hanging when the server stops does not delay shutdown.
	hung := make(chan error, 1)
	go func() {
		resp, err := http.Get(inst.URL() + "/metrics")
		if err == nil {
			resp.Body.Close()
		}
		hung <- err
	}()
	time.Sleep(50 * time.Millisecond)
	began = time.Now()
	if err := inst.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took > time.Second {
		t.Fatalf("Close took %v with a hanging scrape", took)
	}
	<-hung
}

func TestRefuseConnections(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	if r := do(t, c, http.MethodGet, inst.URL()+"/health", ""); r.status != 200 {
		t.Fatalf("health = %d", r.status)
	}
	if err := inst.SetFaults(Faults{RefuseConnections: true}); err != nil {
		t.Fatal(err)
	}
	// Even the pooled keep-alive connection is gone.
	if _, err := c.Get(inst.URL() + "/health"); !refused(err) {
		t.Fatalf("while refusing: err = %v, want connection refused", err)
	}
	if err := inst.SetFaults(Faults{}); err != nil {
		t.Fatal(err)
	}
	if r := do(t, c, http.MethodGet, inst.URL()+"/health", ""); r.status != 200 {
		t.Fatalf("health after reopening = %d", r.status)
	}
}

func TestAdminRefuseFor(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	r := post(t, c, inst.URL()+"/admin/faults", `{"refuseConnections":true,"refuseFor":"1500ms"}`)
	if r.status != 200 {
		t.Fatalf("admin = %d %s", r.status, r.body)
	}
	// The refusal starts just after the answer is sent, so a request right
	// behind it may still be served.
	waitFor(t, func() bool {
		resp, err := c.Get(inst.URL() + "/health")
		if err == nil {
			resp.Body.Close()
		}
		return refused(err)
	})
	waitFor(t, func() bool {
		resp, err := c.Get(inst.URL() + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	if f := inst.Faults(); f != (Faults{}) {
		t.Fatalf("faults after refusal ended = %+v", f)
	}
}

func TestDieMidStream(t *testing.T) {
	t.Parallel()
	cfg := quick()
	cfg.Faults.DieAfterTokens = 3
	inst := start(t, cfg)
	c := client(t)
	requireDiesAfterThreeChunks(t, c, inst.URL()+"/v1/completions", `{"prompt":"x","max_tokens":10,"stream":true}`)
	// Non-streaming requests die without any response.
	if _, err := c.Post(inst.URL()+"/v1/completions", "application/json",
		strings.NewReader(`{"prompt":"x","max_tokens":10}`)); err == nil {
		t.Fatal("non-streaming request survived the die fault")
	}
	waitFor(t, func() bool { m := inst.EngineMetrics(); return m.Running+m.Waiting == 0 })
}

func TestCompletionsStatusFault(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	if r := post(t, c, inst.URL()+"/admin/faults", `{"completionsStatus":503}`); r.status != 200 {
		t.Fatalf("admin = %d %s", r.status, r.body)
	}
	r := post(t, c, inst.URL()+"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}]}`)
	if e := decode[wireError](t, r.body); r.status != 503 || e.Error.Code != 503 {
		t.Fatalf("completion = %d %s", r.status, r.body)
	}
	if r := do(t, c, http.MethodGet, inst.URL()+"/metrics", ""); r.status != 200 {
		t.Fatalf("metrics affected by the completions fault: %d", r.status)
	}
}

func TestAdminFaults(t *testing.T) {
	t.Parallel()
	inst := start(t, quick())
	c := client(t)
	tests := []struct {
		name   string
		body   string
		status int
		want   Faults
	}{
		{name: "set", body: `{"metricsDelay":"1.5s","metricsStatus":500,"dieAfterTokens":4}`, status: 200,
			want: Faults{MetricsDelay: 1500 * time.Millisecond, MetricsStatus: 500, DieAfterTokens: 4}},
		{name: "unknown field", body: `{"metricDelay":"1s"}`, status: 400,
			want: Faults{MetricsDelay: 1500 * time.Millisecond, MetricsStatus: 500, DieAfterTokens: 4}},
		{name: "bad duration", body: `{"metricsDelay":"soon"}`, status: 400,
			want: Faults{MetricsDelay: 1500 * time.Millisecond, MetricsStatus: 500, DieAfterTokens: 4}},
		{name: "bad status", body: `{"metricsStatus":200}`, status: 400,
			want: Faults{MetricsDelay: 1500 * time.Millisecond, MetricsStatus: 500, DieAfterTokens: 4}},
		{name: "refuseFor alone", body: `{"refuseFor":"1s"}`, status: 400,
			want: Faults{MetricsDelay: 1500 * time.Millisecond, MetricsStatus: 500, DieAfterTokens: 4}},
		{name: "clear", body: `{}`, status: 200, want: Faults{}},
	}
	for _, tc := range tests {
		r := post(t, c, inst.URL()+"/admin/faults", tc.body)
		if r.status != tc.status {
			t.Fatalf("%s: status %d, want %d: %s", tc.name, r.status, tc.status, r.body)
		}
		got := decode[Faults](t, do(t, c, http.MethodGet, inst.URL()+"/admin/faults", "").body)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Fatalf("%s: faults (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestFaultsJSONRoundTrip(t *testing.T) {
	t.Parallel()
	in := Faults{MetricsDelay: time.Second, MetricsHang: true, MetricsStatus: 502, MetricsGarbage: true,
		RefuseConnections: true, RefuseFor: time.Minute, DieAfterTokens: 2, CompletionsStatus: 500}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Faults
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
}

func TestSetFaultsRejectsInvalid(t *testing.T) {
	t.Parallel()
	inst, err := New(quick())
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	if err := inst.SetFaults(Faults{CompletionsStatus: 42}); err == nil || !strings.Contains(err.Error(), "completionsStatus") {
		t.Fatalf("SetFaults error = %v", err)
	}
	if f := inst.Faults(); f != (Faults{}) {
		t.Fatalf("invalid faults applied: %+v", f)
	}
}

// refused reports a refused dial, or a reset of the kept-alive connection
// the server was closing when refusal began (the close is asynchronous).
func refused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}
