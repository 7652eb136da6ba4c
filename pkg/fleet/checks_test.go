package fleet

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// synthetic builds a report with one stage per QPS for each policy, from
// (throughput, TTFT p90) pairs; windowed completions equal the QPS times
// ok, so ok < 0.9 marks a saturated stage.
type point struct {
	qps, tput, ttft, ok float64
}

func synthetic(workloads map[string]map[string][]point) *Report {
	r := &Report{}
	for _, name := range []string{"shared-prefix", "no-sharing", "agentic", "multi-turn"} {
		ps, ok := workloads[name]
		if !ok {
			continue
		}
		w := WorkloadReport{Name: name}
		for _, pol := range []string{PolicyRoundRobin, PolicyPrefixOnly, PolicyUpstreamDefault, PolicyOursDefault} {
			pts, ok := ps[pol]
			if !ok {
				continue
			}
			l := PolicyLadder{Policy: pol}
			for _, p := range pts {
				l.Stages = append(l.Stages, StageResult{QPS: p.qps, OutputTokensPerS: p.tput, TTFT: Percentiles{P90: p.ttft},
					SuccessPct: 100, WindowCompletionsPerS: p.qps * p.ok})
			}
			w.Policies = append(w.Policies, l)
		}
		r.Workloads = append(r.Workloads, w)
	}
	return r
}

func statuses(cs []Check) map[string]string {
	out := map[string]string{}
	for _, c := range cs {
		out[c.ID] = c.Status
	}
	return out
}

func TestChecks(t *testing.T) {
	t.Parallel()
	good := map[string]map[string][]point{
		"shared-prefix": {
			PolicyRoundRobin:      {{10, 100, 50, 1}, {20, 100, 5000, 0.5}},
			PolicyPrefixOnly:      {{10, 200, 40, 1}, {20, 150, 20000, 0.6}},
			PolicyUpstreamDefault: {{10, 200, 40, 1}, {20, 190, 4000, 0.8}},
			PolicyOursDefault:     {{10, 200, 40, 1}, {20, 210, 3000, 0.85}},
		},
		"no-sharing": {
			PolicyRoundRobin:      {{10, 100, 50, 1}},
			PolicyUpstreamDefault: {{10, 103, 40, 1}},
			PolicyOursDefault:     {{10, 101, 30, 1}},
		},
		"multi-turn": {
			PolicyUpstreamDefault: {{10, 100, 50, 1}},
			PolicyOursDefault:     {{10, 90, 80, 1}}, // loses
		},
	}
	want := map[string]string{
		"cache-aware-vs-rr": Pass, "no-sharing-parity": Pass, "prefix-only-collapse": Pass,
		"ours-beats-upstream-shared-prefix": Pass, "ours-not-worse-no-sharing": Pass, "ours-not-worse-multi-turn": Fail,
	}
	if diff := cmp.Diff(want, statuses(Checks(synthetic(good)))); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}

	bad := map[string]map[string][]point{
		"shared-prefix": {
			PolicyRoundRobin:      {{10, 100, 50, 1}, {20, 100, 5000, 0.5}},
			PolicyPrefixOnly:      {{10, 120, 40, 1}, {20, 120, 4100, 0.8}},
			PolicyUpstreamDefault: {{10, 120, 40, 1}, {20, 120, 4000, 0.8}}, // only 1.2× round-robin
			PolicyOursDefault:     {{10, 120, 40, 1}, {20, 118, 4500, 0.8}},
		},
		"no-sharing": {
			PolicyRoundRobin:      {{10, 100, 50, 1}},
			PolicyUpstreamDefault: {{10, 120, 40, 1}}, // 20 % apart
		},
	}
	want = map[string]string{
		"cache-aware-vs-rr": Fail, "no-sharing-parity": Fail, "prefix-only-collapse": Fail,
		"ours-beats-upstream-shared-prefix": Fail,
	}
	if diff := cmp.Diff(want, statuses(Checks(synthetic(bad)))); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}

	want = map[string]string{
		"cache-aware-vs-rr": Skip, "no-sharing-parity": Skip, "prefix-only-collapse": Skip, "ours-beats-upstream-shared-prefix": Skip,
	}
	if diff := cmp.Diff(want, statuses(Checks(&Report{}))); diff != "" {
		t.Errorf("empty report (-want +got):\n%s", diff)
	}
}
