package pdsidecar_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/openepp/openepp/pkg/pdsidecar"
	"github.com/openepp/openepp/pkg/sim"
	"github.com/openepp/openepp/test/leakcheck"
)

// TestMain fails the run if goroutines of this package or the simulator
// outlive the tests.
func TestMain(m *testing.M) { leakcheck.Main(m, 3*time.Second, "openepp/pkg/") }

// client returns an HTTP client whose idle connections close with the test.
func client(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

// send POSTs body to url, naming prefiller in the sidecar header unless
// it is "".
func send(t *testing.T, c *http.Client, url, prefiller, body string) reply {
	t.Helper()
	var header []string
	if prefiller != "" {
		header = []string{pdsidecar.PrefillerHeader, prefiller}
	}
	return sendWith(t, c, url, body, header...)
}

// sendWith POSTs body to url with the header name, value pairs (each
// added, so a name may repeat).
func sendWith(t *testing.T, c *http.Client, url, body string, header ...string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for j := 0; j+1 < len(header); j += 2 {
		req.Header.Add(header[j], header[j+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: read: %v", url, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

// answer is the part of a completion (or its last SSE usage chunk) the
// tests read.
type answer struct {
	Choices []json.RawMessage `json:"choices"`
	Usage   *struct {
		Prompt     int `json:"prompt_tokens"`
		Completion int `json:"completion_tokens"`
		Details    struct {
			Cached int `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
	} `json:"usage"`
	Error *struct {
		Message string `json:"message"`
		Code    int    `json:"code"`
	} `json:"error"`
}

// parseAnswer decodes a JSON answer, or the usage chunk of an SSE stream
// (which must end in [DONE]); events is the number of data lines.
func parseAnswer(t *testing.T, r reply) (a answer, events int) {
	t.Helper()
	body := r.body
	if strings.HasPrefix(r.header.Get("Content-Type"), "text/event-stream") {
		var data []string
		sc := bufio.NewScanner(strings.NewReader(string(r.body)))
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				data = append(data, d)
			}
		}
		if len(data) < 2 || data[len(data)-1] != "[DONE]" {
			t.Fatalf("stream does not end in [DONE]: %s", r.body)
		}
		body, events = []byte(data[len(data)-2]), len(data)
	}
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return a, events
}

// families parses a Prometheus text page strictly.
func families(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("metrics page does not parse: %v", err)
	}
	return fams
}

// scrape returns an instance's metric families.
func scrape(t *testing.T, c *http.Client, inst *sim.Instance) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := c.Get(inst.URL() + inst.MetricsPath())
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return families(t, string(b))
}

// gather returns a registry's metric families.
func gather(t *testing.T, g interface {
	Gather() ([]*dto.MetricFamily, error)
}) map[string]*dto.MetricFamily {
	t.Helper()
	list, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range list {
		out[f.GetName()] = f
	}
	return out
}

// count returns counter name's value for label=value (or a histogram's
// sample count when label is "").
func count(t *testing.T, fams map[string]*dto.MetricFamily, name, label, value string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("family %s missing", name)
	}
	for _, m := range f.GetMetric() {
		if label == "" && m.Histogram != nil {
			return float64(m.Histogram.GetSampleCount())
		}
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s{%s=%q}", name, label, value)
	return 0
}

// closedPort returns a 127.0.0.1 address nobody listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// hangingPrefiller accepts prefills and never answers; it signals each
// one's start and end (its context done: timeout or cancel).
func hangingPrefiller(t *testing.T) (hostPort string, started, ended <-chan struct{}) {
	t.Helper()
	begin, ch, stop := make(chan struct{}, 16), make(chan struct{}, 16), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Reading the body lets net/http notice the caller hanging up.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case begin <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-stop: // the test ended first
			return
		}
		select {
		case ch <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) }) // runs before srv.Close
	return strings.TrimPrefix(srv.URL, "http://"), begin, ch
}

// staticPrefiller answers every prefill with status and body.
func staticPrefiller(t *testing.T, status int, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// completion is a completions body with a prompt of n words.
func completion(n, maxTokens int, stream bool) string {
	extra := ""
	if stream {
		extra = `,"stream":true,"stream_options":{"include_usage":true}`
	}
	return fmt.Sprintf(`{"prompt":%q,"max_tokens":%d%s}`, strings.TrimSpace(strings.Repeat("w ", n)), maxTokens, extra)
}

// receive waits up to 5s for a value on ch.
func receive(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: nothing within 5s", what)
	}
}

// waitFor polls cond for up to 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
	}
}

// untouched fails the test if a request reached any of insts' engines.
func untouched(t *testing.T, insts ...*sim.Instance) {
	t.Helper()
	for _, inst := range insts {
		if m := inst.EngineMetrics(); m.Finished+uint64(m.Waiting+m.Running) != 0 {
			t.Errorf("a rejected request reached %s: %+v", inst.HostPort(), m)
		}
	}
}
