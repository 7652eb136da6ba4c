package fleet

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/disagg"
	"github.com/openepp/openepp/pkg/filters"
	"github.com/openepp/openepp/pkg/scheduler"
)

var update = flag.Bool("update", false, "rewrite testdata/k0-golden.json from the current model")

// pdAlways is config/pd.yaml with the always decider: every request is
// disaggregated while a prefill server exists.
var pdAlways = pdConfigText(disagg.AlwaysDeciderType, "", 0)

// tinyAgentic is the long-prompt agentic workload at test size.
func tinyAgentic(t *testing.T) Workload {
	t.Helper()
	w, err := WorkloadByName("agentic")
	if err != nil {
		t.Fatal(err)
	}
	w = tiny(w)
	w.WarmupRequests = 20
	return w
}

// runSim runs spec to the end and returns the simulation, for its
// internals, with the stage result.
func runSim(t *testing.T, spec RunSpec) (*sim, *StageResult) {
	t.Helper()
	spec = spec.withDefaults()
	if err := spec.validate(); err != nil {
		t.Fatal(err)
	}
	s, err := newSim(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.loop(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, s.result()
}

// TestDisaggRoutesByRole: with 2 of 8 servers prefilling, every request
// prefills on a prefill server and decodes on a decode server, which pull
// the KV; only decode servers answer the client.
func TestDisaggRoutesByRole(t *testing.T) {
	t.Parallel()
	w := tinyAgentic(t)
	w.Duration = 2 * time.Second // so that pulls start inside the window
	spec := RunSpec{Workload: w, Policy: ConfigPolicy("pd", "", []byte(pdAlways)), QPS: 4, Seed: 1, PrefillServers: 2}
	s, res := runSim(t, spec)
	if res.Completed == 0 || res.Completed != res.Requests || res.FirstError != "" {
		t.Fatalf("stage: %d of %d completed, first error %q", res.Completed, res.Requests, res.FirstError)
	}
	for i := range s.flights {
		f := &s.flights[i]
		if f.prefill < 0 || f.prefill >= 2 || f.server < 2 || f.fellBack {
			t.Fatalf("request %d: prefill server %d, decode server %d, fell back %v", f.id, f.prefill, f.server, f.fellBack)
		}
	}
	for i := range s.servers {
		m := s.servers[i].eng.Metrics()
		role, want := s.servers[i].ep.Labels[filters.RoleLabel], "decode"
		if i < 2 {
			want = "prefill"
		}
		// A prefill server answers one token per request and pulls nothing.
		prefillOnly := m.KVTransfers == 0 && m.GenerationTokens == m.Finished
		if role != want || prefillOnly != (want == "prefill") {
			t.Errorf("server %d (%s): %d pulls, %d tokens for %d requests", i, role, m.KVTransfers, m.GenerationTokens, m.Finished)
		}
	}
	d := res.Disagg
	if d == nil || d.PrefillServers != 2 || d.DisaggregatedPct != 100 || d.FallbackPct != 0 || d.KVTransferTokensPerS <= 0 ||
		d.KVTokensPerTransfer <= 0 || d.PrefillWorkPct <= 0 || d.PrefillMs.P50 <= 0 || d.HandoffMs.P50 <= 0 {
		t.Errorf("P/D result: %+v", d)
	}
	if p50 := res.TTFT.P50; p50 < d.PrefillMs.P50 {
		t.Errorf("TTFT p50 %v ms is shorter than the prefill phase's %v ms", p50, d.PrefillMs.P50)
	}
}

// TestDisaggZeroIsToday: without prefill servers nothing changes. A run
// matches the result recorded before P/D existed (testdata; -update
// rewrites it), and a label-blind policy routes the same with roles.
func TestDisaggZeroIsToday(t *testing.T) {
	t.Parallel()
	w, _ := WorkloadByName("shared-prefix")
	w.Duration, w.WarmupRequests, w.Ladder, w.MinSeeds = time.Second, 50, []float64{120}, 0
	spec := RunSpec{Workload: w, Policy: ConfigPolicy("ours-default", "", []byte(config.DefaultText)), QPS: 120, Seed: 1, Timeout: 2 * time.Second}
	res, err := Run(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	res.WallSeconds = 0
	got, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	const golden = "testdata/k0-golden.json"
	if *update {
		if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	var g, w0 any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &w0); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(w0, g); diff != "" {
		t.Errorf("the stage differs from %s (-recorded +now); if the model changed on purpose, "+
			"rerun with -update:\n%s", golden, diff)
	}
	spec.PrefillServers = 2
	roles, err := Run(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if roles.Disagg == nil || roles.Disagg.DisaggregatedPct != 0 {
		t.Errorf("label-blind policy with roles: P/D result %+v, want one with nothing disaggregated", roles.Disagg)
	}
	roles.Disagg, roles.WallSeconds = nil, 0
	if diff := cmp.Diff(*res, *roles); diff != "" {
		t.Errorf("roles changed a label-blind policy's routing (-without +with):\n%s", diff)
	}
}

// TestDisaggTimeouts: a client timeout cancels a request in its prefill,
// and a prefill past PrefillTimeout falls back to a local prefill; every
// routed request is released once, and no engine keeps work.
func TestDisaggTimeouts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name              string
		timeout, prefillT time.Duration
	}{
		{"client timeout in the prefill", 500 * time.Millisecond, 0},
		{"prefill timeout falls back", 0, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			reg := scheduler.Registration{Type: "recorder", Factory: func(string, json.RawMessage, *scheduler.Handle) (scheduler.Plugin, error) {
				return rec, nil
			}}
			cfg := strings.Replace(pdAlways, "- type: decode-filter", "- type: recorder\n- type: decode-filter", 1)
			cfg = strings.Replace(cfg, "  - pluginRef: decode-filter\n", "  - pluginRef: decode-filter\n  - pluginRef: recorder\n", 1)
			// One prefill server for seven decoders is overloaded at once.
			spec := RunSpec{Workload: tinyAgentic(t), Policy: ConfigPolicy("pd", "", []byte(cfg), reg), QPS: 40, Seed: 2,
				PrefillServers: 1, Timeout: tc.timeout, PrefillTimeout: tc.prefillT}
			s, res := runSim(t, spec)
			if rec.pre == 0 || rec.pre != rec.done {
				t.Errorf("%d PreRequest, %d ResponseComplete: every routed request must be released once", rec.pre, rec.done)
			}
			for i := range s.servers {
				if e := s.servers[i].eng; e.Waiting() > 0 || e.Running() > 0 {
					t.Errorf("server %d still holds %d waiting and %d running requests", i, e.Waiting(), e.Running())
				}
			}
			cancelled := s.servers[0].eng.Metrics().Cancelled
			if tc.timeout > 0 && (cancelled == 0 || res.TimedOut == 0) {
				t.Errorf("%d prefills cancelled, %d requests timed out: want some of each", cancelled, res.TimedOut)
			}
			if tc.prefillT > 0 && (cancelled == 0 || res.Disagg.FallbackPct == 0 || res.Completed != res.Requests) {
				t.Errorf("%d prefills cancelled, %v %% fell back, %d of %d completed: want fallbacks that complete",
					cancelled, res.Disagg.FallbackPct, res.Completed, res.Requests)
			}
		})
	}
}

func TestDisaggDeterministicForSeed(t *testing.T) {
	t.Parallel()
	run := func(seed uint64) StageResult {
		spec := RunSpec{Workload: tinyAgentic(t), Policy: ConfigPolicy("pd", "", []byte(pdConfigText(disagg.PrefixDeciderType, "{nonCachedTokens: 256}", 0))),
			QPS: 24, Seed: seed, PrefillServers: 3}
		r, err := Run(context.Background(), spec)
		if err != nil {
			t.Fatal(err)
		}
		r.WallSeconds = 0
		return *r
	}
	a, b := run(5), run(5)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Fatalf("same seed, different results (-first +second):\n%s", diff)
	}
	if a.Disagg == nil || a.Disagg.DisaggregatedPct == 0 || cmp.Equal(a, run(6)) {
		t.Errorf("seed 5: P/D result %+v; want requests disaggregated and seed 6 to differ", a.Disagg)
	}
}

// rogue names a prefiller that is not in the pool.
type rogue struct{}

func (rogue) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: "rogue", Name: "rogue"}
}

func (rogue) PreRequest(_ context.Context, _ *scheduler.State, _ *scheduler.Request, res *scheduler.Result) {
	res.SetHeader(disagg.PrefillerHeader, "192.0.2.1:8000")
}

func TestDisaggUnknownPrefiller(t *testing.T) {
	t.Parallel()
	reg := scheduler.Registration{Type: "rogue", Factory: func(string, json.RawMessage, *scheduler.Handle) (scheduler.Plugin, error) {
		return rogue{}, nil
	}}
	cfg := strings.Replace(prefixOnlyConfig, "- type: prefix-cache-scorer\n", "- type: prefix-cache-scorer\n- type: rogue\n", 1)
	w, _ := WorkloadByName("shared-prefix")
	res, err := Run(context.Background(), RunSpec{Workload: tiny(w), Policy: ConfigPolicy("rogue", "", []byte(cfg), reg), QPS: 50, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.Failed != res.Requests || !strings.Contains(res.FirstError, `"192.0.2.1:8000", which is not in the pool`) {
		t.Errorf("%d of %d failed, first error %q: want every request failed for the unknown prefiller", res.Failed, res.Requests, res.FirstError)
	}
}

func TestPrefillServersValidation(t *testing.T) {
	t.Parallel()
	w := tinyAgentic(t)
	rr, _ := Builtin(PolicyRoundRobin)
	for _, k := range []int{-1, 8, 9} {
		if _, err := Run(context.Background(), RunSpec{Workload: w, Policy: rr, QPS: 10, PrefillServers: k}); err == nil ||
			!strings.Contains(err.Error(), "prefill servers: must be in [0, 8)") {
			t.Errorf("%d prefill servers: err = %v", k, err)
		}
	}
	m := &Matrix{Workloads: []Workload{w}, Policies: []Policy{rr}, PrefillServers: 8}
	if _, err := m.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "prefill servers") {
		t.Errorf("matrix with 8 prefill servers of 8: err = %v", err)
	}
	d := &Disaggregation{Workloads: []Workload{w}, Arms: []DisaggArm{{Policy: rr, PrefillServers: 8}}}
	if _, err := d.Run(context.Background()); err == nil || !strings.Contains(err.Error(), `arm "round-robin"`) {
		t.Errorf("study with 8 prefill servers of 8: err = %v", err)
	}
}

// TestPDConfigIsShipped: the study's prefix-based arm runs config/pd.yaml.
func TestPDConfigIsShipped(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../config/pd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := config.Load(b)
	if err != nil {
		t.Fatal(err)
	}
	ours, err := config.Load([]byte(pdConfigText(disagg.PrefixDeciderType, "{nonCachedTokens: 256}", pdMaxPrefillQueue)))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(shipped)
	b2, _ := json.Marshal(ours)
	if diff := cmp.Diff(string(a), string(b2)); diff != "" {
		t.Errorf("the study's P/D config differs from config/pd.yaml (-shipped +study):\n%s", diff)
	}
}

// TestDisaggStudy runs the study's code path at a tiny size: every arm
// on two workloads, rendered in the report and the table.
func TestDisaggStudy(t *testing.T) {
	t.Parallel()
	lp, sp := LongPromptWorkload(), tiny(must(WorkloadByName("shared-prefix")))
	lp = tiny(lp)
	d := &Disaggregation{Workloads: []Workload{lp, sp}, Arms: DisaggArms(), Seeds: []uint64{1}, Workers: 2}
	rep, err := d.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Arms) != len(DisaggArms()) || len(rep.Workloads) != 2 || rep.Workloads[0].Name != "long-prompt" {
		t.Fatalf("report: %d arms, %d workloads", len(rep.Arms), len(rep.Workloads))
	}
	for _, w := range rep.Workloads {
		for i, l := range w.Policies {
			s := l.Stages[0]
			if l.Policy != rep.Arms[i].Name || s.Completed == 0 || s.FirstError != "" {
				t.Errorf("%s/%s: stage %+v", w.Name, l.Policy, s)
			}
			if pd := rep.Arms[i].PrefillServers > 0; pd != (s.Disagg != nil) || (pd && s.Disagg.PrefillServers != rep.Arms[i].PrefillServers) {
				t.Errorf("%s/%s: P/D result %+v", w.Name, l.Policy, s.Disagg)
			}
		}
	}
	var md, table strings.Builder
	if err := Markdown(&md, &Report{Disagg: rep}, ""); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"### Prefill/decode disaggregation at equal server count", "**long-prompt (PD)**, 1 seeds; KV pull ",
		"| `pd-2p-always` |", "| disagg. (KV pulled, tok/s) \\ QPS |", "NIXL producer"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	if err := WriteTable(&table, &Report{Workloads: rep.Workloads}); err != nil || !strings.Contains(table.String(), "pd-4p at ") {
		t.Errorf("table (%v) lacks the P/D lines:\n%s", err, table.String())
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
