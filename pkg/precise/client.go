package precise

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/certfile"
	"github.com/openepp/openepp/pkg/promreg"
	"github.com/openepp/openepp/pkg/request"
)

// maxTokenizerResponse bounds what a tokenizer answer may weigh: a 1M-token
// prompt's IDs as JSON are about 8 MiB.
const maxTokenizerResponse = 16 << 20

// tokenizerClient talks to vLLM's render or /tokenize endpoints.
type tokenizerClient struct {
	http *http.Client
	api  string
}

func newTokenizerClient(p TokenParams) (*tokenizerClient, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	tr.IdleConnTimeout = 90 * time.Second
	if p.VLLM.InsecureSkipVerify || p.VLLM.CACertPath != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: p.VLLM.InsecureSkipVerify} //nolint:gosec // the operator asked for it
		if p.VLLM.CACertPath != "" && !p.VLLM.InsecureSkipVerify {
			pool, err := certfile.CAPool(p.VLLM.CACertPath)
			if err != nil {
				return nil, fmt.Errorf("vllm.caCertPath: %w", err)
			}
			cfg.RootCAs = pool
		}
		tr.TLSClientConfig = cfg
	}
	return &tokenizerClient{http: &http.Client{Transport: tr}, api: p.VLLM.API}, nil
}

// tokenize returns the token IDs of b's prompt as the server at base
// renders it for model.
func (c *tokenizerClient) tokenize(ctx context.Context, base, model string, b *request.Body) ([]uint32, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b.Raw, &fields); err != nil {
		return nil, fmt.Errorf("request body: %w", err)
	}
	modelJSON, _ := json.Marshal(model)
	chat := b.API == request.ChatCompletions
	path := "/v1/completions/render"
	if chat {
		path = "/v1/chat/completions/render"
	}
	var body map[string]json.RawMessage
	switch {
	case b.API == request.Messages:
		// /tokenize takes no Anthropic request: its render endpoint does.
		path, body = "/v1/messages/render", fields
	case c.api == "render":
		body = fields
	default:
		path = "/tokenize"
		body = map[string]json.RawMessage{}
		for _, f := range []string{"messages", "tools", "prompt", "add_special_tokens", "chat_template", "chat_template_kwargs"} {
			if v, ok := fields[f]; ok {
				body[f] = v
			}
		}
		if chat {
			body["add_generation_prompt"] = json.RawMessage("true")
		}
	}
	body["model"] = modelJSON
	payload, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+path, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenizerResponse+1))
	if err != nil {
		return nil, fmt.Errorf("POST %s: reading the answer: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("POST %s: status %d: %s", path, resp.StatusCode, snippet(data))
	}
	if len(data) > maxTokenizerResponse {
		return nil, fmt.Errorf("POST %s: answer larger than %d bytes", path, maxTokenizerResponse)
	}
	return tokenIDsOf(path, data)
}

// tokenIDsOf reads the IDs from a tokenizer answer: /tokenize's "tokens",
// chat render's "token_ids", or the first element's "token_ids" of
// completions render's list.
func tokenIDsOf(path string, data []byte) ([]uint32, error) {
	var one struct {
		Tokens   []uint32 `json:"tokens"`
		TokenIDs []uint32 `json:"token_ids"`
	}
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '[' {
		var list []json.RawMessage
		if err := json.Unmarshal(data, &list); err != nil {
			return nil, fmt.Errorf("POST %s: answer: %w", path, err)
		}
		if len(list) == 0 {
			return nil, fmt.Errorf("POST %s: empty answer", path)
		}
		data = list[0]
	}
	if err := json.Unmarshal(data, &one); err != nil {
		return nil, fmt.Errorf("POST %s: answer: %w", path, err)
	}
	ids := one.TokenIDs
	if ids == nil {
		ids = one.Tokens
	}
	if ids == nil {
		return nil, fmt.Errorf("POST %s: answer has neither token_ids nor tokens: %s", path, snippet(data))
	}
	return ids, nil
}

func snippet(b []byte) string {
	const n = 200
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

func newTokenMetrics(reg prometheus.Registerer) (*tokenMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	requests, err := promreg.Shared(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "openepp_token_producer_requests_total",
		Help: "Requests token-producer tokenized, by outcome (ok, inline_token_ids, unsupported_api, no_endpoint, timeout, error).",
	}, []string{"plugin", "outcome"}))
	if err != nil {
		return nil, err
	}
	dur, err := promreg.Shared(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "openepp_token_producer_duration_seconds",
		Help:    "Time token-producer spent on a tokenizer call.",
		Buckets: []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5},
	}, []string{"plugin"}))
	if err != nil {
		return nil, err
	}
	return &tokenMetrics{requests: requests, duration: dur}, nil
}
