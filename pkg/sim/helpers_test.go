package sim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openepp/openepp/test/leakcheck"
)

// TestMain fails the run if goroutines started by this package outlive the
// tests (every instance is closed in a cleanup).
func TestMain(m *testing.M) { leakcheck.Main(m, 3*time.Second, "openepp/pkg/sim.") }

// start runs an instance for the test's duration.
func start(t *testing.T, cfg Config) *Instance {
	t.Helper()
	inst, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := inst.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return inst
}

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

func do(t *testing.T, c *http.Client, method, url, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

func post(t *testing.T, c *http.Client, url, body string) reply {
	t.Helper()
	return do(t, c, http.MethodPost, url, body)
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// sseEvents splits an SSE body into its data payloads.
func sseEvents(t *testing.T, body []byte) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("SSE line without data prefix: %q", line)
		}
		out = append(out, data)
	}
	return out
}

// chunk is the part of a completion chunk or response the tests read.
type chunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Index   int     `json:"index"`
		Text    string  `json:"text"`
		Finish  *string `json:"finish_reason"`
		Message *struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"message"`
		Delta *struct {
			Role    string  `json:"role"`
			Content *string `json:"content"`
		} `json:"delta"`
	} `json:"choices"`
	Usage *usageAnswer `json:"usage"`
}

// quick returns a config whose engine answers in microseconds.
func quick() Config {
	return Config{Latency: Latency{
		InterTokenLatency: Ptr(100 * time.Microsecond), PrefillOverhead: Ptr(200 * time.Microsecond),
		PrefillTimePerToken: Ptr(time.Duration(0)),
	}}
}

// usageAnswer is the OpenAI-shaped usage of an answer.
type usageAnswer struct {
	Prompt     int `json:"prompt_tokens"`
	Completion int `json:"completion_tokens"`
	Total      int `json:"total_tokens"`
	Details    struct {
		Cached int `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
}

// requireDiesAfterThreeChunks streams body to url on a simulator with the
// DieAfterTokens 3 fault: the client must read three data chunks, then an
// abrupt close.
func requireDiesAfterThreeChunks(t *testing.T, c *http.Client, url, body string) {
	t.Helper()
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	chunks := 0
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: ") {
			chunks++
		}
	}
	if sc.Err() == nil || chunks != 3 {
		t.Fatalf("read %d chunks, then err %v; want 3 chunks then an abrupt close", chunks, sc.Err())
	}
}
