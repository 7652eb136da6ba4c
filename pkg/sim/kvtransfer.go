package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"strings"

	"github.com/openepp/openepp/pkg/sim/engine"
)

// P/D disaggregation, the vLLM NixlConnector way: a decode sidecar sends
// the prefill with kv_transfer_params.do_remote_decode, takes the
// kv_transfer_params of the answer, and sends the original request to its
// decode server with them (do_remote_prefill). See doc.go.

// kvTransfer is what the simulator acts on in a request's
// kv_transfer_params.
type kvTransfer struct {
	// remoteDecode: prefill only, for a decoder that will pull the KV; the
	// answer has 1 token and kv_transfer_params naming this instance.
	remoteDecode bool
	// remotePrefill: a prefiller computed the prompt's KV; pull it instead
	// of prefilling (engine.Request.RemotePrefill).
	remotePrefill bool
	// p2p names a peer holding a prefix of the prompt, to pull from
	// (engine.Request.PullTokens); nil for none. See p2p.go.
	p2p *p2pSource
}

// parseKVTransfer validates kv_transfer_params: absent or null, or an
// object whose known fields have vLLM's types. Unknown fields are ignored,
// as vLLM's connectors ignore fields they do not use.
func parseKVTransfer(raw json.RawMessage) (kvTransfer, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return kvTransfer{}, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return kvTransfer{}, errors.New("kv_transfer_params must be an object")
	}
	var kv kvTransfer
	var engineID, host string
	var port int
	var blocks []int
	var p2p json.RawMessage
	present := map[string]bool{}
	var errs []string
	check := func(name string, dst any, want string) {
		ok, err := kvField(fields, "kv_transfer_params", name, dst, want)
		present[name] = ok
		if err != nil {
			errs = append(errs, err.Error())
		}
	}
	check("do_remote_decode", &kv.remoteDecode, "a boolean")
	check("do_remote_prefill", &kv.remotePrefill, "a boolean")
	check("remote_engine_id", &engineID, "a string")
	check("remote_host", &host, "a string")
	check("remote_port", &port, "an integer")
	check("remote_block_ids", &blocks, "a list of integers")
	check("p2p", &p2p, "an object")
	if present["p2p"] {
		src, err := parseP2P(p2p)
		if err != nil {
			errs = append(errs, err.Error())
		}
		kv.p2p = src
	}
	if len(errs) > 0 {
		return kvTransfer{}, errors.New(strings.Join(errs, "; "))
	}
	switch {
	case kv.remoteDecode && kv.remotePrefill:
		return kvTransfer{}, errors.New("kv_transfer_params: do_remote_decode and do_remote_prefill cannot both be true")
	case kv.remotePrefill && !(present["remote_engine_id"] && present["remote_host"] && present["remote_port"] && present["remote_block_ids"]):
		return kvTransfer{}, errors.New("kv_transfer_params: do_remote_prefill needs remote_engine_id, remote_host, remote_port and remote_block_ids (from the prefill answer)")
	case present["remote_port"] && (port < 1 || port > 65535):
		return kvTransfer{}, fmt.Errorf("kv_transfer_params.remote_port: %d is not a port", port)
	}
	for j, b := range blocks {
		if b < 0 {
			return kvTransfer{}, fmt.Errorf("kv_transfer_params.remote_block_ids[%d]: %d is negative", j, b)
		}
	}
	return kv, nil
}

// kvField decodes fields[name] into dst; a missing or null field leaves
// dst alone and reports false. path names the object in errors.
func kvField(fields map[string]json.RawMessage, path, name string, dst any, want string) (bool, error) {
	v, ok := fields[name]
	if !ok || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
		return false, nil
	}
	if err := json.Unmarshal(v, dst); err != nil {
		return false, fmt.Errorf("%s.%s: must be %s or null", path, name, want)
	}
	return true, nil
}

// applyKVTransfer reads raw into g and checks it fits the request.
func applyKVTransfer(g *genRequest, raw json.RawMessage) *apiError {
	kv, err := parseKVTransfer(raw)
	bad := func(msg string) *apiError {
		return &apiError{status: http.StatusBadRequest, typ: "BadRequestError", param: "kv_transfer_params", msg: msg}
	}
	switch {
	case err != nil:
		return bad(err.Error())
	case (kv.remoteDecode || kv.remotePrefill) && len(g.prompts) > 1:
		return bad("kv_transfer_params: P/D disaggregation needs a single prompt")
	case kv.remoteDecode && g.stream:
		return bad("kv_transfer_params.do_remote_decode needs stream=false: the prefill answer carries kv_transfer_params in its JSON body")
	}
	g.kv = kv
	if kv.remoteDecode {
		g.maxTokens = 1 // the prefill produces the first token only
	}
	return nil
}

// wireKVAnswer is the kv_transfer_params of a prefill answer: what a
// decoder needs to pull the prompt's KV from this instance.
type wireKVAnswer struct {
	DoRemotePrefill bool     `json:"do_remote_prefill"`
	DoRemoteDecode  bool     `json:"do_remote_decode"`
	RemoteBlockIDs  []uint64 `json:"remote_block_ids"`
	RemoteEngineID  string   `json:"remote_engine_id"`
	RemoteHost      string   `json:"remote_host"`
	RemotePort      int      `json:"remote_port"`
}

// kvAnswer describes the KV of a prompt of n tokens prefilled for call id.
// The block IDs are synthetic (one per prompt block, within the cache):
// the engine frees a finished request's blocks at once, where vLLM keeps
// them until the decoder has read them.
func (i *Instance) kvAnswer(n int, id uint64) *wireKVAnswer {
	host, _, _ := net.SplitHostPort(i.addr)
	numBlocks, size := uint64(i.cfg.engine.NumBlocks), i.cfg.engine.BlockSize
	ids := make([]uint64, (n+size-1)/size)
	for j := range ids {
		ids[j] = (id*uint64(len(ids)) + uint64(j)) % numBlocks
	}
	return &wireKVAnswer{
		DoRemotePrefill: true, RemoteBlockIDs: ids, RemoteEngineID: i.engineID,
		RemoteHost: host, RemotePort: i.Port(),
	}
}

// engineIDFor derives a stable engine ID from the bound address and model,
// so a restarted instance on the same address keeps its ID.
func engineIDFor(addr, model string) string {
	h := fnv.New64a()
	_, _ = fmt.Fprintf(h, "%s|%s", addr, model)
	return fmt.Sprintf("openepp-sim-%016x", h.Sum64())
}

// KVTransferStats counts an instance's KV traffic (P/D and P2P) since it
// started; the metrics page exports the same numbers as openepp_sim_kv_*
// counters.
type KVTransferStats struct {
	// RemoteDecodeRequests counts prefill-only requests accepted
	// (do_remote_decode): prefills this instance ran for remote decoders.
	RemoteDecodeRequests uint64
	// RemotePrefillRequests counts requests accepted whose prompt KV is
	// pulled from a prefiller (do_remote_prefill) instead of computed.
	RemotePrefillRequests uint64
	// TransferredTokens counts the prompt tokens pulled (beyond local
	// prefix-cache hits), as the pulls start.
	TransferredTokens uint64
	// P2PRequests counts requests accepted naming a P2P source
	// (kv_transfer_params.p2p), P2PLookupFailures those whose source could
	// not say what it holds (served without a pull).
	P2PRequests       uint64
	P2PLookupFailures uint64
	// P2PPulls counts P2P pulls started, P2PPullTokens the prompt tokens
	// they pull (beyond local prefix-cache hits).
	P2PPulls      uint64
	P2PPullTokens uint64
}

// KVTransferStats returns the KV transfer counters.
func (i *Instance) KVTransferStats() KVTransferStats { return i.kvStats(i.drv.metrics()) }

// kvStats combines the instance's counters with the engine's m.
func (i *Instance) kvStats(m engine.Metrics) KVTransferStats {
	return KVTransferStats{
		RemoteDecodeRequests:  i.remoteDecodes.Load(),
		RemotePrefillRequests: i.remotePrefills.Load(),
		TransferredTokens:     m.KVTransferTokens,
		P2PRequests:           i.p2pRequests.Load(),
		P2PLookupFailures:     i.p2pLookupFailures.Load(),
		P2PPulls:              m.P2PPulls,
		P2PPullTokens:         m.P2PPullTokens,
	}
}

// EngineID is the remote_engine_id this instance puts in prefill answers.
func (i *Instance) EngineID() string { return i.engineID }

// countKVTransfer records an accepted P/D or P2P request.
func (i *Instance) countKVTransfer(kv kvTransfer) {
	if kv.remoteDecode {
		i.remoteDecodes.Add(1)
	}
	if kv.remotePrefill {
		i.remotePrefills.Add(1)
	}
	if kv.p2p != nil {
		i.p2pRequests.Add(1)
	}
}

// collectKVTransfer exports the KV transfer counters under every metrics
// engine.
func collectKVTransfer(e *emitter, s KVTransferStats, model string) {
	for _, c := range []struct {
		name, help string
		v          uint64
	}{
		{"openepp_sim_kv_remote_decode_requests_total",
			"Prefill-only requests (kv_transfer_params.do_remote_decode) accepted: prefills run for remote decoders.", s.RemoteDecodeRequests},
		{"openepp_sim_kv_remote_prefill_requests_total",
			"Requests (kv_transfer_params.do_remote_prefill) accepted whose prompt KV is pulled from a prefiller.", s.RemotePrefillRequests},
		{"openepp_sim_kv_transfer_tokens_total",
			"Prompt tokens whose KV was pulled from prefillers (beyond local prefix-cache hits).", s.TransferredTokens},
		{"openepp_sim_kv_p2p_requests_total",
			"Requests accepted naming a P2P KV source (kv_transfer_params.p2p).", s.P2PRequests},
		{"openepp_sim_kv_p2p_lookup_failures_total",
			"P2P sources that could not be asked what they hold; those requests were served without a pull.", s.P2PLookupFailures},
		{"openepp_sim_kv_p2p_pulls_total",
			"P2P KV pulls started: requests that pulled a prompt prefix from a peer.", s.P2PPulls},
		{"openepp_sim_kv_p2p_pull_tokens_total",
			"Prompt tokens whose KV was pulled from P2P peers (beyond local prefix-cache hits).", s.P2PPullTokens},
	} {
		e.counter(c.name, c.help, c.v, "model_name", model)
	}
}
