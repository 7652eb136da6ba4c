package fleet

import (
	"fmt"
	"reflect"
	"time"

	"github.com/openepp/openepp/pkg/filters"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/sim/engine"
)

// P/D disaggregation in virtual time, run as llm-d's decode sidecar runs
// it. When the scheduler's answer names a prefill endpoint (the
// x-prefiller-host-port header disagg-profile-handler's PreRequest writes),
// the request runs in two phases: a prefill-only copy (same prompt and
// adapter, max_tokens 1) on the prefill server, then, when that ends, the
// request itself on its decode server with RemotePrefill set, so the decode
// engine pulls the prompt's KV beyond its own prefix-cache hit at the
// engine's transfer price and computes only the last prompt token.
//
// The EPP sees only the decode server, as live: ResponseHeaders and the
// first chunk at its first token, ResponseComplete with its usage at the
// end. The client's TTFT runs
// from arrival to that first token. A client timeout cancels whichever
// phase is running. A prefill the prefill server refuses, or that has not
// ended PrefillTimeout after it was sent, is dropped and the decode server
// prefills locally, as pkg/pdsidecar falls back.
//
// Not modelled: the network (a transfer costs the engine's price whatever
// else is in flight), the prefiller holding the blocks until the decoder
// has pulled them (here they are freed, and stay cached, when the prefill
// ends), and the sidecar's own latency and HTTP round trips.

// DefaultPrefillTimeout is the decode sidecar's bound on a prefill call
// (pdsidecar.DefaultPrefillTimeout).
const DefaultPrefillTimeout = 60 * time.Second

// roleLabels are server i's labels when the first k servers prefill.
func roleLabels(i, k int) map[string]string {
	switch {
	case k == 0:
		return nil
	case i < k:
		return map[string]string{filters.RoleLabel: "prefill"}
	default:
		return map[string]string{filters.RoleLabel: "decode"}
	}
}

// remote reports whether f's prompt was computed by its prefill server.
func (f *flight) remote() bool { return f.prefill >= 0 && !f.fellBack }

// startPrefill sends f's prefill-only copy to its prefill server; false
// means the server refused it, so f is to prefill on its decode server.
func (s *sim) startPrefill(f *flight) bool {
	p := int(f.prefill)
	req := engine.Request{ID: f.id, Tokens: f.p.tokens, MaxTokens: 1, LoRA: f.p.lora, Media: f.p.media, Priority: s.enginePriority(f)}
	req.PullTokens, req.TransferPerToken = s.pullTokens(f, p)
	if err := s.servers[p].eng.Submit(req, s.now()); err != nil {
		f.fellBack = true
		return false
	}
	s.reschedule(p)
	f.status = flightPrefilling
	s.events.push(event{at: s.now() + s.spec.PrefillTimeout, kind: evPrefillTimeout, id: f.id})
	return true
}

// prefilled hands f from its prefill server to its decode server, which
// pulls the KV.
func (s *sim) prefilled(f *flight, ev engine.Event) {
	f.prefillEnd, f.prefillCached, f.status = ev.Time, int32(ev.Cached), flightRunning
	if err := s.submit(f, true); err != nil {
		s.router.complete(f, request.Usage{}, scheduler.TerminationError)
		s.fail(f, fmt.Errorf("decode after a remote prefill: %w", err))
	}
}

// abandonPrefill is the sidecar's prefill timeout: drop the prefill and
// prefill on the decode server.
func (s *sim) abandonPrefill(id uint64) {
	f := &s.flights[id]
	if f.status != flightPrefilling {
		return
	}
	p := int(f.prefill)
	s.servers[p].eng.Cancel(id)
	s.reschedule(p)
	f.status, f.fellBack = flightRunning, true
	if err := s.submit(f, false); err != nil {
		s.router.complete(f, request.Usage{}, scheduler.TerminationError)
		s.fail(f, fmt.Errorf("local prefill after a prefill timeout: %w", err))
	}
}

// kvCount is what the decode servers had pulled at one instant (taken:
// counted yet): transfers and tokens; and the encoder caches' lookups.
type kvCount struct {
	taken               bool
	transfers, tokens   uint64
	encHits, encMisses  uint64 // encoder-cache lookups (multimodal.go)
	p2pPulls, p2pTokens uint64 // P2P pulls (p2p.go)
}

// countPulled records the servers' pull counters when the window opens and
// closes, on the first event at or past each edge.
func (s *sim) countPulled(now time.Duration) {
	for k, edge := range [2]time.Duration{s.start, s.end} {
		if now < edge || s.kvPulled[k].taken {
			continue
		}
		c := kvCount{taken: true}
		for i := range s.servers {
			m := s.servers[i].eng.Metrics()
			c.transfers += m.KVTransfers
			c.tokens += m.KVTransferTokens
			c.encHits += m.EncoderHits
			c.encMisses += m.EncoderMisses
			c.p2pPulls += m.P2PPulls
			c.p2pTokens += m.P2PPullTokens
		}
		s.kvPulled[k] = c
	}
}

// DisaggResult is what P/D disaggregation did in a stage.
type DisaggResult struct {
	// PrefillServers is how many servers had the prefill role.
	PrefillServers int `json:"prefillServers"`
	// DisaggregatedPct is the share of the stage's requests the EPP sent
	// with a prefill server; FallbackPct the share of those that prefilled
	// on their decode server after all (refused, or PrefillTimeout).
	DisaggregatedPct float64 `json:"disaggregatedPct"`
	FallbackPct      float64 `json:"fallbackPct"`
	// KVTransferTokensPerS counts the prompt tokens whose KV the decode
	// servers started pulling inside the window, per second;
	// KVTokensPerTransfer is their mean per pull (a prompt less what the
	// decode server already cached).
	KVTransferTokensPerS float64 `json:"kvTransferTokensPerS"`
	KVTokensPerTransfer  float64 `json:"kvTokensPerTransfer"`
	// PrefillWorkPct is the prefill servers' share of the tokens computed
	// for completed requests (LoadCV's measure): uncached prompt tokens on
	// a prefill server, output tokens on a decode server.
	PrefillWorkPct float64 `json:"prefillWorkPct"`
	// PrefillMs is, over completed requests prefilled remotely, the time
	// from arrival to the prefill's end (routing, queueing and compute on
	// the prefill server); HandoffMs the time from there to the decode
	// server's first token (queueing, KV pull and one iteration).
	PrefillMs Percentiles `json:"prefillMs"`
	HandoffMs Percentiles `json:"handoffMs"`
}

// disaggResult measures P/D over the window's requests, or returns nil
// when there were no prefill servers and no request was disaggregated.
func (s *sim) disaggResult(requests int) *DisaggResult {
	var sent, fellBack int
	var prefill, handoff []float64
	for i := range s.flights {
		f := &s.flights[i]
		if !f.measured || f.prefill < 0 {
			continue
		}
		sent++
		if f.fellBack {
			fellBack++
		}
		if f.status == flightDone && f.remote() {
			prefill = append(prefill, ms(f.prefillEnd-f.arrival))
			handoff = append(handoff, ms(f.arrival+f.ttft-f.prefillEnd))
		}
	}
	k := s.spec.PrefillServers
	if k == 0 && sent == 0 {
		return nil
	}
	d := &DisaggResult{PrefillServers: k, PrefillMs: percentiles(prefill), HandoffMs: percentiles(handoff)}
	if requests > 0 {
		d.DisaggregatedPct = round3(100 * float64(sent) / float64(requests))
	}
	if sent > 0 {
		d.FallbackPct = round3(100 * float64(fellBack) / float64(sent))
	}
	transfers, tokens := s.kvPulled[1].transfers-s.kvPulled[0].transfers, s.kvPulled[1].tokens-s.kvPulled[0].tokens
	d.KVTransferTokensPerS = round3(float64(tokens) / s.spec.Workload.Duration.Seconds())
	if transfers > 0 {
		d.KVTokensPerTransfer = round3(float64(tokens) / float64(transfers))
	}
	var onPrefill, total int64
	for i := range s.servers {
		total += s.servers[i].work
		if i < k {
			onPrefill += s.servers[i].work
		}
	}
	if total > 0 {
		d.PrefillWorkPct = round3(100 * float64(onPrefill) / float64(total))
	}
	return d
}

// averageDisagg is average for the runs' P/D results; a run without one
// counts as zeros.
func averageDisagg(rs []*StageResult) *DisaggResult {
	var out DisaggResult
	found := false
	sum := reflect.ValueOf(&out).Elem()
	for _, r := range rs {
		if r.Disagg != nil {
			found = true
			addInto(sum, reflect.ValueOf(r.Disagg).Elem())
		}
	}
	if !found {
		return nil
	}
	scaleInto(sum, 1/float64(len(rs)))
	return &out
}
