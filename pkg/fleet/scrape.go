package fleet

import (
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/sim/engine"
)

// The metrics scraper: each server's endpoint gets a fresh snapshot every
// ScrapeInterval (± ScrapeJitter), so decisions see metrics as old as a
// real EPP's.

// scrape refreshes server i's metrics and schedules its next scrape.
func (s *sim) scrape(i int) {
	s.publishMetrics(i)
	next := s.spec.ScrapeInterval
	if j := s.spec.ScrapeJitter; j > 0 {
		next += time.Duration(s.jitter.Int64N(int64(2*j)+1)) - j
	}
	s.events.push(event{at: s.now() + next, kind: evScrape, server: int32(i)})
	s.release()
}

// publishMetrics gives server i's endpoint what a scrape would read now.
func (s *sim) publishMetrics(i int) {
	srv := &s.servers[i]
	e := srv.eng
	m := &endpoint.Metrics{
		WaitingQueueSize: e.Waiting(), RunningRequestsSize: e.Running(), KVCacheUsagePercent: e.KVUsage(),
		CacheBlockSize: s.engCfg.BlockSize, CacheNumBlocks: s.engCfg.NumBlocks,
		MaxActiveModels: s.engCfg.MaxLoRAs, UpdateTime: s.clock.Now(), ScrapeInterval: s.spec.ScrapeInterval,
	}
	if s.engCfg.MaxLoRAs > 0 {
		m.BaseModel = s.engCfg.Model // vLLM with LoRA on names it on its residency gauges
	}
	if s.lora {
		full := e.Metrics()
		m.ActiveModels, m.WaitingModels = nameSet(full.RunningLoRAs), nameSet(full.WaitingLoRAs)
		srv.residency = residencyMap(full.LoRAResidency, srv.residency)
		m.LoRAResidency = srv.residency
		for _, r := range full.LoRAResidency {
			if r.OnGPU {
				m.GPULoadedAdapters++
			}
		}
		m.LoRALoadSeconds, m.LoRAActivateSeconds = meanSeconds(full.LoRALoad), meanSeconds(full.LoRAActivate)
	}
	srv.ep.SetMetrics(m)
	srv.ep.SetStale(false)
}

func nameSet(names []string) map[string]int {
	out := make(map[string]int, len(names))
	for _, n := range names {
		out[n] = 1
	}
	return out
}

// residencyMap is what vLLM's residency gauges say of states: prev when
// nothing changed (snapshots share it and never mutate it), else a new map.
func residencyMap(states []engine.LoRAState, prev map[string]endpoint.LoRAResidence) map[string]endpoint.LoRAResidence {
	same := prev != nil && len(prev) == len(states)
	for _, st := range states {
		if !same {
			break
		}
		r, ok := prev[st.Name]
		same = ok && r == endpoint.LoRAResidence{OnGPU: st.OnGPU, Pinned: st.Pinned}
	}
	if same {
		return prev
	}
	out := make(map[string]endpoint.LoRAResidence, len(states))
	for _, st := range states {
		out[st.Name] = endpoint.LoRAResidence{OnGPU: st.OnGPU, Pinned: st.Pinned}
	}
	return out
}

// meanSeconds is a transition's mean duration, as the EPP reads vLLM's
// histogram (0 before the first).
func meanSeconds(t engine.TransitionStats) float64 {
	if t.Count == 0 {
		return 0
	}
	return t.Seconds / float64(t.Count)
}
