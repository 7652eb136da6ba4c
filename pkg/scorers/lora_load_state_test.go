package scorers

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

var (
	onGPU  = endpoint.LoRAResidence{OnGPU: true}
	inHost = endpoint.LoRAResidence{}
	pinned = endpoint.LoRAResidence{OnGPU: true, Pinned: true}
)

// lsServer is one server's adapter state as a test writes it.
type lsServer struct {
	held     map[string]endpoint.LoRAResidence // nil: reports no residency
	slots    int                               // MaxActiveModels
	running  []string                          // adapters with requests running
	loaded   int                               // GPULoadedAdapters when held is nil
	load     float64                           // LoRALoadSeconds
	activate float64                           // LoRAActivateSeconds
	base     string
}

func (s lsServer) set(m *endpoint.Metrics) {
	m.LoRAResidency, m.MaxActiveModels, m.GPULoadedAdapters = s.held, s.slots, s.loaded
	m.LoRALoadSeconds, m.LoRAActivateSeconds, m.BaseModel = s.load, s.activate, s.base
	m.ActiveModels = map[string]int{}
	for _, a := range s.running {
		m.ActiveModels[a] = 1
	}
	for _, r := range s.held {
		if r.OnGPU {
			m.GPULoadedAdapters++
		}
	}
}

func lsEndpoints(servers ...lsServer) []*endpoint.Endpoint {
	return scEndpoints(len(servers), func(i int, m *endpoint.Metrics) { servers[i].set(m) })
}

func lsScore(t *testing.T, params, model string, eps []*endpoint.Endpoint) []float64 {
	t.Helper()
	s := mustBuild[*LoRALoadState](t, LoRALoadStateRegistration(), params, nil)
	return s.Score(scCtx, scState(), plugintest.Request(model, 10), eps)
}

// noBonus switches both bonuses off, so scores are the bare tiers.
const noBonus = `{"placementBonus":0,"headroomBonus":0}`

func TestLoRALoadStateTiers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		server lsServer
		want   float64
	}{
		{"in a GPU slot", lsServer{held: map[string]endpoint.LoRAResidence{"a": onGPU}, slots: 2}, 1},
		{"pinned in a GPU slot", lsServer{held: map[string]endpoint.LoRAResidence{"a": pinned}, slots: 1}, 1},
		{"host cache only, slots full", lsServer{held: map[string]endpoint.LoRAResidence{"a": inHost, "b": onGPU, "c": onGPU}, slots: 2, running: []string{"b", "c"}}, 0.7},
		{"absent, a slot free", lsServer{held: map[string]endpoint.LoRAResidence{"b": onGPU}, slots: 2}, 0.6},
		{"host-cached adapters take no slot", lsServer{held: map[string]endpoint.LoRAResidence{"b": inHost, "c": inHost, "d": onGPU}, slots: 2}, 0.6},
		{"slots full, one idle", lsServer{held: map[string]endpoint.LoRAResidence{"b": onGPU, "c": onGPU}, slots: 2, running: []string{"b"}}, 0.3},
		{"slots full, the idle one pinned", lsServer{held: map[string]endpoint.LoRAResidence{"b": onGPU, "c": pinned}, slots: 2, running: []string{"b"}}, 0},
		{"slots full, all busy", lsServer{held: map[string]endpoint.LoRAResidence{"b": onGPU, "c": onGPU}, slots: 2, running: []string{"b", "c"}}, 0},
		{"no residency reported, a slot free", lsServer{slots: 2, loaded: 1}, 0.6},
		{"no residency reported, slots full: never evictable", lsServer{slots: 2, loaded: 2}, 0},
		{"no residency reported, the adapter running there", lsServer{slots: 2, loaded: 2, running: []string{"a"}}, 0},
		{"no slots known anywhere: no adapter serving, no preference", lsServer{}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff([]float64{tc.want}, lsScore(t, noBonus, "a", lsEndpoints(tc.server)), approx); diff != "" {
				t.Errorf("score (-want +got):\n%s", diff)
			}
		})
	}
}

// lsTierServer is a server of tier (0 GPU-resident … 4 saturated) for
// adapter a, with free of its 4 GPU slots free where the tier allows.
func lsTierServer(a string, tier, free int) lsServer {
	held := map[string]endpoint.LoRAResidence{}
	others := 4 - free
	switch tier {
	case 0:
		held[a], others = onGPU, others-1
	case 1:
		held[a] = inHost
	case 3, 4:
		others = 4
	}
	var running []string
	for i := range others {
		name := fmt.Sprintf("other-%d", i)
		held[name] = onGPU
		if tier != 3 || i > 0 { // tier 3 keeps other-0 idle
			running = append(running, name)
		}
	}
	return lsServer{held: held, slots: 4, running: running}
}

// TestLoRALoadStateBonusesStayInTier: whatever the free slots and wherever
// an adapter's rendezvous home falls, an endpoint of a better tier
// outscores every endpoint of a worse one, at the defaults and at the
// largest bonuses validation allows for the default tiers.
func TestLoRALoadStateBonusesStayInTier(t *testing.T) {
	t.Parallel()
	for _, params := range []string{"", `{"placementBonus":0.045,"headroomBonus":0.045}`, `{"placementBonus":0.09,"headroomBonus":0}`} {
		homeTiers := map[int]bool{}
		for n := range 30 {
			a := fmt.Sprintf("adapter-%d", n)
			var servers []lsServer
			var tiers []int
			for tier := range 5 {
				for free := range 4 {
					if tier == 2 && free == 0 || tier >= 3 && free > 0 {
						continue
					}
					servers, tiers = append(servers, lsTierServer(a, tier, free)), append(tiers, tier)
				}
			}
			eps := lsEndpoints(servers...)
			got := lsScore(t, params, a, eps)
			homeTiers[tiers[rendezvousHome(a, eps)]] = true
			for i := range got {
				for j := range got {
					if tiers[i] < tiers[j] && !(got[i] > got[j]) {
						t.Fatalf("%s %s: endpoint %d (tier %d) scores %v, not above endpoint %d (tier %d) at %v",
							params, a, i, tiers[i], got[i], j, tiers[j], got[j])
					}
				}
			}
		}
		if len(homeTiers) < 4 {
			t.Errorf("%s: the homes fell in tiers %v only; the test should move them around", params, homeTiers)
		}
	}
}

func TestLoRALoadStateRendezvousHome(t *testing.T) {
	t.Parallel()
	cold := make([]lsServer, 8)
	for i := range cold {
		cold[i] = lsServer{held: map[string]endpoint.LoRAResidence{}, slots: 4}
	}
	eps := lsEndpoints(cold...)
	plain := 0.6*0.94 + 0.03 // free-slot tier, scaled, all slots free
	bonused := func(scores []float64) []int {
		var out []int
		for i, v := range scores {
			if v > plain+1e-9 {
				out = append(out, i)
			}
		}
		return out
	}
	got := bonused(lsScore(t, "", "a", eps))
	if len(got) != 1 {
		t.Fatalf("endpoints with the placement bonus: %v, want exactly one", got)
	}
	home := eps[got[0]]
	if again := bonused(lsScore(t, "", "a", eps)); !slices.Equal(again, got) {
		t.Errorf("second call bonused %v, first %v", again, got)
	}
	reversed := slices.Clone(eps)
	slices.Reverse(reversed)
	if r := bonused(lsScore(t, "", "a", reversed)); len(r) != 1 || reversed[r[0]] != home {
		t.Errorf("in reverse order the bonus went to %v, want %s", r, home.Name)
	}
	// Any subset holding the home keeps it: the adapter converges on it.
	for drop := range eps {
		if eps[drop] == home {
			continue
		}
		sub := slices.Delete(slices.Clone(eps), drop, drop+1)
		if r := bonused(lsScore(t, "", "a", sub)); len(r) != 1 || sub[r[0]] != home {
			t.Errorf("without %s the bonus went to %v, want %s", eps[drop].Name, r, home.Name)
		}
	}
	// Different adapters have different homes.
	homes := map[string]bool{}
	for n := range 40 {
		homes[eps[rendezvousHome(fmt.Sprintf("adapter-%d", n), eps)].Name] = true
	}
	if len(homes) < 6 {
		t.Errorf("40 adapters share %d homes among 8 servers, want them spread", len(homes))
	}
}

func TestLoRALoadStateNoBonusOnceLoaded(t *testing.T) {
	t.Parallel()
	eps := lsEndpoints(make([]lsServer, 6)...)
	home := rendezvousHome("a", eps)
	for _, where := range []endpoint.LoRAResidence{onGPU, inHost} {
		servers := make([]lsServer, 6)
		for i := range servers {
			servers[i] = lsServer{held: map[string]endpoint.LoRAResidence{}, slots: 4}
		}
		servers[home].held["a"] = where
		got := lsScore(t, "", "a", lsEndpoints(servers...))
		want := make([]float64, 6)
		for i := range want {
			want[i] = 0.6*0.94 + 0.03
		}
		want[home] = 1*0.94 + 0.03*3/4
		if !where.OnGPU {
			want[home] = 0.7*0.94 + 0.03 + 0.03 // host cache: the home still draws it into a slot
		}
		if diff := cmp.Diff(want, got, approx); diff != "" {
			t.Errorf("adapter %+v at its home: scores (-want +got):\n%s", where, diff)
		}
	}
}

func TestLoRALoadStateHeadroom(t *testing.T) {
	t.Parallel()
	servers := []lsServer{
		{held: map[string]endpoint.LoRAResidence{"x": onGPU}, slots: 4},                                     // 3 of 4 free
		{held: map[string]endpoint.LoRAResidence{"x": onGPU, "y": onGPU, "z": onGPU}, slots: 4},             // 1 of 4 free
		{held: map[string]endpoint.LoRAResidence{"a": onGPU, "x": onGPU, "y": onGPU, "z": onGPU}, slots: 4}, // full
		{held: map[string]endpoint.LoRAResidence{"a": onGPU}, slots: 0},                                     // capacity unknown
	}
	want := []float64{0.6*0.97 + 0.03*0.75, 0.6*0.97 + 0.03*0.25, 0.97, 0.97}
	if diff := cmp.Diff(want, lsScore(t, `{"placementBonus":0}`, "a", lsEndpoints(servers...)), approx); diff != "" {
		t.Errorf("scores (-want +got):\n%s", diff)
	}
}

func TestLoRALoadStateBaseModel(t *testing.T) {
	t.Parallel()
	servers := []lsServer{
		{base: "llama", held: map[string]endpoint.LoRAResidence{"x": onGPU, "y": onGPU, "z": onGPU}, slots: 4, running: []string{"x", "y"}},
		{held: map[string]endpoint.LoRAResidence{"x": onGPU}, slots: 2, running: []string{"x", "w"}}, // w is not resident: not busy
		{}, // reports no slots
		{base: "llama", slots: 4, loaded: 4, running: []string{"x"}}, // no residency: nothing known busy
	}
	want := []float64{0.94 * 0.5, 0.94 * 0.5, 0.94, 0.94}
	if diff := cmp.Diff(want, lsScore(t, "", "llama", lsEndpoints(servers...)), approx); diff != "" {
		t.Errorf("base-model scores (-want +got):\n%s", diff)
	}
	// A model no server names as its base is scored as an adapter.
	servers[0].base, servers[3].base = "", "mistral"
	want = []float64{0.6*0.97 + 0.03*0.25, 0.6*0.97 + 0.03*0.5, 0, 0}
	if diff := cmp.Diff(want, lsScore(t, `{"placementBonus":0}`, "llama", lsEndpoints(servers...)), approx); diff != "" {
		t.Errorf("adapter scores (-want +got):\n%s", diff)
	}
}

func TestLoRALoadStatePricing(t *testing.T) {
	t.Parallel()
	empty := map[string]endpoint.LoRAResidence{}
	full := map[string]endpoint.LoRAResidence{"x": onGPU, "y": onGPU}
	cases := []struct {
		name    string
		params  string
		servers []lsServer
		want    []float64
	}{{
		name:   "priced by own times, the fleet mean where none reported",
		params: `{"placementBonus":0,"headroomBonus":0,"loadHorizonSeconds":20}`,
		servers: []lsServer{
			{held: map[string]endpoint.LoRAResidence{"a": onGPU}, slots: 2},
			{held: map[string]endpoint.LoRAResidence{"a": inHost}, slots: 2, activate: 2}, // 1 − 2/20
			{held: empty, slots: 2, load: 3, activate: 2},                                 // 1 − 5/20
			{held: full, slots: 2, running: []string{"x"}, load: 5, activate: 2},          // (1 − 7/20) × 0.3/0.6
			{held: empty, slots: 2},                             // means: load 12, activate 2
			{held: empty, slots: 2, load: 28, activate: 2},      // past the horizon
			{held: full, slots: 2, running: []string{"x", "y"}}, // saturated stays
		},
		want: []float64{1, 0.9, 0.75, 0.325, 0.3, 0, 0},
	}, {
		name:   "floored at saturatedScore",
		params: `{"placementBonus":0,"headroomBonus":0,"loadHorizonSeconds":1,"saturatedScore":0.1}`,
		servers: []lsServer{
			{held: map[string]endpoint.LoRAResidence{"a": inHost}, slots: 2, activate: 5},
			{held: empty, slots: 2, load: 5},
			{held: full, slots: 2, running: []string{"x"}, load: 0.5},
		},
		want: []float64{0.1, 0.1, 0.1},
	}, {
		name:   "no server reported a time: the fixed tiers",
		params: `{"placementBonus":0,"headroomBonus":0,"loadHorizonSeconds":10}`,
		servers: []lsServer{
			{held: map[string]endpoint.LoRAResidence{"a": inHost}, slots: 2},
			{held: empty, slots: 2},
			{held: full, slots: 2, running: []string{"x"}},
		},
		want: []float64{0.7, 0.6, 0.3},
	}, {
		name:   "only activations reported: a load counts 0 s",
		params: `{"placementBonus":0,"headroomBonus":0,"loadHorizonSeconds":10}`,
		servers: []lsServer{
			{held: map[string]endpoint.LoRAResidence{"a": inHost}, slots: 2, activate: 1},
			{held: empty, slots: 2},
		},
		want: []float64{0.9, 0.9},
	}, {
		name:   "pricing off: times ignored",
		params: noBonus,
		servers: []lsServer{
			{held: map[string]endpoint.LoRAResidence{"a": inHost}, slots: 2, activate: 100},
			{held: empty, slots: 2, load: 0.001},
		},
		want: []float64{0.7, 0.6},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tc.want, lsScore(t, tc.params, "a", lsEndpoints(tc.servers...)), approx); diff != "" {
				t.Errorf("scores (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLoRALoadStateExplicitZero: a parameter given as 0 is 0, not its
// default.
func TestLoRALoadStateExplicitZero(t *testing.T) {
	t.Parallel()
	eps := lsEndpoints(lsServer{held: map[string]endpoint.LoRAResidence{"a": inHost}, slots: 2})
	got := lsScore(t, `{"cpuResidentScore":0,"freeSlotScore":0,"evictableScore":0,"placementBonus":0,"headroomBonus":0}`, "a", eps)
	if diff := cmp.Diff([]float64{0}, got); diff != "" {
		t.Errorf("scores (-want +got):\n%s", diff)
	}
}

func TestLoRALoadStateParamErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		raw  string
		want []string
	}{
		{`{"gpuResidentScore":1.5}`, []string{"gpuResidentScore: must be in [0, 1], got 1.5"}},
		{`{"saturatedScore":-0.1,"headroomBonus":2}`, []string{"saturatedScore: must be in [0, 1], got -0.1", "headroomBonus: must be in [0, 1], got 2"}},
		{`{"loadHorizonSeconds":-1}`, []string{"loadHorizonSeconds: must be a finite number >= 0, got -1"}},
		{`{"cpuResidentScore":0.5}`, []string{"freeSlotScore: must be <= cpuResidentScore (0.5)", "tiers are ordered gpuResidentScore >= cpuResidentScore"}},
		{`{"gpuResidentScore":0.2}`, []string{"cpuResidentScore: must be <= gpuResidentScore (0.2), as the tiers are ordered", "got 0.7"}},
		{`{"placementBonus":0.5,"headroomBonus":0.5}`, []string{"placementBonus + headroomBonus: must be < 1, got 1"}},
		{`{"cpuResidentScore":0.62}`, []string{"placementBonus + headroomBonus: must stay below every gap between tiers", "the gap cpuResidentScore − freeSlotScore is"}},
		{`{"placementBonus":0.1}`, []string{"the gap cpuResidentScore − freeSlotScore is"}},
		{`{"placementBonus":"0.1"}`, []string{"parameters"}},
		{`{"bonus":0.1}`, []string{`unknown field "bonus"`}},
	}
	for _, tc := range cases {
		t.Run(tc.raw, func(t *testing.T) {
			t.Parallel()
			_, err := LoRALoadStateFactory("x", json.RawMessage(tc.raw), nil)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want it to contain %q", err, w)
				}
			}
		})
	}
	// Equal tiers have no gap to protect.
	if _, err := LoRALoadStateFactory("x", json.RawMessage(`{"cpuResidentScore":0.6,"evictableScore":0.6,"saturatedScore":0.6}`), nil); err != nil {
		t.Errorf("equal tiers refused: %v", err)
	}
}

// TestLoRALoadStateNoLoRAPool checks a pool that serves no adapters (no
// slots, no residency anywhere, as vLLM without --enable-lora): every
// request scores the same everywhere, so the home bonus cannot pull all of
// a model's traffic to one server.
func TestLoRALoadStateNoLoRAPool(t *testing.T) {
	t.Parallel()
	got := lsScore(t, "", "llama", lsEndpoints(lsServer{}, lsServer{}, lsServer{}))
	if want := []float64{0.94, 0.94, 0.94}; !cmp.Equal(want, got, approx) {
		t.Errorf("scores %v, want %v", got, want)
	}
}
