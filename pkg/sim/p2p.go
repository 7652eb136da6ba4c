package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// P2P KV pulls, after llm-d's p2p-source-producer: the EPP names a peer
// holding more of the prompt's prefix than the chosen server, the routing
// sidecar (package pdsidecar) puts it in kv_transfer_params.p2p, and the
// server pulls those blocks instead of computing them. vLLM's connector
// learns what the peer holds from the peer; here the instance asks the
// peer's engine over HTTP (KVLookupPath), then submits with
// engine.Request.PullTokens. See doc.go.

// KVLookupPath is the simulator-only endpoint a peer answers: how many
// leading tokens of each prompt its prefix cache holds.
const KVLookupPath = "/openepp/sim/kv/lookup"

// Bounds of a lookup: a peer that does not answer within p2pLookupTimeout
// is no source; its answer is read up to maxLookupAnswer bytes.
const (
	p2pLookupTimeout = 2 * time.Second
	maxLookupAnswer  = 1 << 20
)

// p2pSource is kv_transfer_params.p2p.
type p2pSource struct {
	host string
	port int
}

func (s *p2pSource) addr() string { return net.JoinHostPort(s.host, strconv.Itoa(s.port)) }

// parseP2P validates kv_transfer_params.p2p: {kv_request_id (a string,
// optional), remote_host (an IP or a host name), remote_port (1..65535)}.
func parseP2P(raw json.RawMessage) (*p2pSource, error) {
	const path = "kv_transfer_params.p2p"
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) != nil || fields == nil {
		return nil, errors.New(path + " must be an object or null")
	}
	var src p2pSource
	var requestID string // checked, unused: the engine needs no transfer ID
	var errs []string
	var hostSet, portSet bool
	for _, f := range []struct {
		name, want string
		dst        any
		set        *bool
	}{
		{"kv_request_id", "a string", &requestID, nil},
		{"remote_host", "a string", &src.host, &hostSet},
		{"remote_port", "an integer", &src.port, &portSet},
	} {
		ok, err := kvField(fields, path, f.name, f.dst, f.want)
		if err != nil {
			errs = append(errs, err.Error())
		}
		if f.set != nil {
			*f.set = ok
		}
	}
	switch {
	case len(errs) > 0:
		return nil, errors.New(strings.Join(errs, "; "))
	case !hostSet || !portSet:
		return nil, errors.New(path + " needs remote_host and remote_port")
	case !validPeerHost(src.host):
		return nil, fmt.Errorf("%s.remote_host: %q is neither an IP address nor a host name", path, src.host)
	case src.port < 1 || src.port > 65535:
		return nil, fmt.Errorf("%s.remote_port: %d is not a port", path, src.port)
	}
	return &src, nil
}

// validPeerHost accepts an IP address without zone, or a name of letters,
// digits, dots and hyphens, so the lookup URL names that host and nothing
// else.
func validPeerHost(h string) bool {
	if ip, err := netip.ParseAddr(h); err == nil {
		return ip.Zone() == ""
	}
	if h == "" || len(h) > 253 || strings.HasPrefix(h, "-") || strings.HasPrefix(h, ".") {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// wireLookup asks a peer what it holds of prompts, for adapter LoRA (""
// for the base model) under CacheSalt ("" for none).
type wireLookup struct {
	Prompts   [][]uint32 `json:"prompts"`
	LoRA      string     `json:"lora"`
	CacheSalt string     `json:"cache_salt"`
}

// wireLookupAnswer holds, per prompt, the leading tokens the peer's prefix
// cache holds (whole blocks).
type wireLookupAnswer struct {
	CachedTokens []int `json:"cached_tokens"`
}

// handleKVLookup serves KVLookupPath.
func (i *Instance) handleKVLookup(w http.ResponseWriter, r *http.Request) {
	var q wireLookup
	if err := decodeBody(w, r, &q); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(q.Prompts) == 0 {
		writeError(w, http.StatusBadRequest, "prompts must be a non-empty list of token-ID lists")
		return
	}
	writeJSON(w, http.StatusOK, wireLookupAnswer{CachedTokens: i.drv.cachedPrefixes(q.Prompts, q.LoRA, q.CacheSalt)})
}

// newPeerClient makes the lookup calls: no proxy from the environment, no
// redirects followed (a peer must not send the prompt elsewhere).
func newPeerClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: p2pLookupTimeout}).DialContext,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     30 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// p2pPulls returns the engine's PullTokens for each of g's prompts: what
// its P2P source holds of them. nil (no pull) when g names no source, pulls
// the whole prompt anyway (do_remote_prefill), or the source cannot say;
// the last is logged and counted, and the request served all the same.
func (i *Instance) p2pPulls(r *http.Request, g genRequest) []int {
	src := g.kv.p2p
	if src == nil || g.kv.remotePrefill {
		return nil
	}
	held, err := i.lookup(r.Context(), src.addr(), wireLookup{Prompts: g.prompts, LoRA: g.lora, CacheSalt: g.cacheSalt})
	if err != nil {
		if r.Context().Err() == nil {
			i.p2pLookupFailures.Add(1)
			i.log.Info("P2P source lookup failed, computing the prompt", "endpoint", src.addr(),
				"requestID", r.Header.Get("x-request-id"), "err", err)
		}
		return nil
	}
	return held
}

// lookup asks the peer at addr what it holds of q's prompts.
func (i *Instance) lookup(ctx context.Context, addr string, q wireLookup) ([]int, error) {
	body, err := json.Marshal(q)
	if err != nil { // cannot happen: lists of integers and strings
		return nil, fmt.Errorf("encode lookup: %w", err)
	}
	if len(body) > maxBodyBytes {
		return nil, fmt.Errorf("lookup of %d bytes exceeds the peer's %d-byte limit", len(body), maxBodyBytes)
	}
	ctx, cancel := i.untilClosing(ctx, p2pLookupTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+KVLookupPath, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("lookup request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := i.peers.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxLookupAnswer+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("read lookup answer: %w", err)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("lookup answered %d: %s", resp.StatusCode, bytes.TrimSpace(b[:min(len(b), 200)]))
	case len(b) > maxLookupAnswer:
		return nil, fmt.Errorf("lookup answer larger than %d bytes", maxLookupAnswer)
	}
	var a wireLookupAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("lookup answer: %w", err)
	}
	if len(a.CachedTokens) != len(q.Prompts) {
		return nil, fmt.Errorf("lookup answer has %d counts for %d prompts", len(a.CachedTokens), len(q.Prompts))
	}
	for j, n := range a.CachedTokens {
		if n < 0 || n > len(q.Prompts[j]) {
			return nil, fmt.Errorf("lookup answer: %d cached tokens of a %d-token prompt", n, len(q.Prompts[j]))
		}
	}
	return a.CachedTokens, nil
}

// untilClosing bounds ctx by d and by the instance shutting down, so a
// hanging peer never holds up Run.
func (i *Instance) untilClosing(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, d)
	go func() {
		select {
		case <-i.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
