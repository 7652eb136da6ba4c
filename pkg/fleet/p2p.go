package fleet

import (
	"fmt"
	"io"
	"time"
)

// P2P KV pulls in virtual time, as llm-d's routing sidecar and vLLM's
// OffloadingConnector serve p2p-source-producer's header: when the
// scheduler's answer names a source (x-kv-cache-source-host-port), the
// server computing the prompt (the prefill server of a disaggregated
// request, else the target) pulls the prompt's prefix that the source
// holds at dispatch (engine.Request.PullTokens, the source engine's
// CachedPrefix), beyond its own cache hit, at the engine's transfer price,
// and computes the rest. The source is not charged (the pull is served
// from its host memory, not its GPU), and a block it evicts between
// dispatch and the pull is pulled anyway.

// pullTokens is the prompt prefix f's source holds for a prompt computed
// on server on, and the pull's price per token (topology.go); 0 without a
// source, or when on is the source.
func (s *sim) pullTokens(f *flight, on int) (int, time.Duration) {
	if f.source < 0 || int(f.source) == on {
		return 0, 0
	}
	return s.servers[f.source].eng.CachedPrefix(f.p.tokens, f.p.lora), s.transferPrice(int(f.source), on)
}

// P2PResult is what P2P pulls did in a stage.
type P2PResult struct {
	// SourcedPct is the share of the stage's requests the EPP named a
	// source for.
	SourcedPct float64 `json:"sourcedPct"`
	// PullsPerS counts the pulls the servers started in the window, per
	// second; TokensPerPull is their mean length (what the source held
	// beyond the puller's own hit).
	PullsPerS     float64 `json:"pullsPerS"`
	TokensPerPull float64 `json:"tokensPerPull"`
}

// p2pResult measures the window's pulls, or returns nil when the EPP
// named no source and no server pulled.
func (s *sim) p2pResult(requests int) *P2PResult {
	sourced := 0
	for i := range s.flights {
		if f := &s.flights[i]; f.measured && f.source >= 0 {
			sourced++
		}
	}
	pulls, tokens := s.kvPulled[1].p2pPulls-s.kvPulled[0].p2pPulls, s.kvPulled[1].p2pTokens-s.kvPulled[0].p2pTokens
	if sourced == 0 && pulls == 0 {
		return nil
	}
	r := &P2PResult{PullsPerS: round3(float64(pulls) / s.spec.Workload.Duration.Seconds())}
	if requests > 0 {
		r.SourcedPct = round3(100 * float64(sourced) / float64(requests))
	}
	if pulls > 0 {
		r.TokensPerPull = round3(float64(tokens) / float64(pulls))
	}
	return r
}

// averageP2P is average for the runs' P2P results; a run without one
// counts as zeros.
func averageP2P(rs []*StageResult) *P2PResult {
	var sum P2PResult
	found := false
	for _, r := range rs {
		if p := r.P2P; p != nil {
			found = true
			sum.SourcedPct += p.SourcedPct
			sum.PullsPerS += p.PullsPerS
			sum.TokensPerPull += p.TokensPerPull
		}
	}
	if !found {
		return nil
	}
	n := float64(len(rs))
	return &P2PResult{SourcedPct: round3(sum.SourcedPct / n), PullsPerS: round3(sum.PullsPerS / n), TokensPerPull: round3(sum.TokensPerPull / n)}
}

// writeP2PLines prints each stage's pulls, when any stage named a source.
func writeP2PLines(w io.Writer, r *Report) {
	writeStageTable(w, r, "P2P KV pulls (x-kv-cache-source-host-port; pulled tokens count as cached in hit%)",
		"sourced%\tpulls/s\ttokens/pull", func(s *StageResult) (string, bool) {
			if p := s.P2P; p != nil {
				return fmt.Sprintf("%.1f\t%.1f\t%.0f", p.SourcedPct, p.PullsPerS, p.TokensPerPull), true
			}
			return "", false
		})
}
