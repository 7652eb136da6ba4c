package pickers

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

var registrations = []scheduler.Registration{RandomRegistration(), MaxScoreRegistration(), WeightedRandomRegistration()}

func TestPickerParams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, params, wantErr string
		wantN                 int
	}{
		{name: "default", params: ``, wantN: 1},
		{name: "null", params: `null`, wantN: 1},
		{name: "explicit", params: `{"maxNumOfEndpoints":3}`, wantN: 3},
		{name: "zero", params: `{"maxNumOfEndpoints":0}`, wantErr: "maxNumOfEndpoints: must be >= 1, got 0"},
		{name: "negative", params: `{"maxNumOfEndpoints":-2}`, wantErr: "maxNumOfEndpoints: must be >= 1, got -2"},
		{name: "string", params: `{"maxNumOfEndpoints":"2"}`, wantErr: "parameters:"},
		{name: "unknown field", params: `{"maxEndpoints":2}`, wantErr: `unknown field "maxEndpoints"`},
	}
	for _, reg := range registrations {
		for _, tc := range tests {
			t.Run(reg.Type+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				checkParams(t, reg, tc.params, tc.wantErr, tc.wantN)
			})
		}
	}
	for _, tc := range []struct {
		name string
		fn   func() error
	}{
		{"NewMaxScore", func() error { _, err := NewMaxScore("p", Params{}); return err }},
		{"NewWeightedRandom", func() error { _, err := NewWeightedRandom("p", Params{}); return err }},
	} {
		if err := tc.fn(); err == nil {
			t.Errorf("%s accepted maxNumOfEndpoints 0", tc.name)
		}
	}
}

// checkParams builds reg's plugin from params and checks the error or, when
// none is wanted, the name and the number of endpoints picked from five.
func checkParams(t *testing.T, reg scheduler.Registration, params, wantErrText string, wantN int) {
	t.Helper()
	p, err := reg.Factory("p", []byte(params), nil)
	wantErr(t, err, wantErrText)
	if err != nil {
		if p != nil {
			t.Errorf("factory returned plugin %v with error", p)
		}
		return
	}
	if got := p.TypedName(); got != (scheduler.TypedName{Type: reg.Type, Name: "p"}) {
		t.Errorf("TypedName = %v", got)
	}
	got, err := p.(scheduler.Picker).Pick(ctx, plugintest.State(1), nil, scoredOf(1, 1, 1, 1, 1))
	if err != nil || len(got) != wantN {
		t.Errorf("Pick = %d endpoints, %v; want %d", len(got), err, wantN)
	}
}

func TestPickersRejectEmpty(t *testing.T) {
	t.Parallel()
	for _, reg := range registrations {
		p, err := reg.Factory("p", []byte(`{"maxNumOfEndpoints":2}`), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.(scheduler.Picker).Pick(ctx, plugintest.State(1), nil, nil)
		if !errors.Is(err, scheduler.ErrNoCandidates) || got != nil {
			t.Errorf("%s: Pick(nil) = %v, %v; want ErrNoCandidates", reg.Type, got, err)
		}
	}
}

func TestPickersConformance(t *testing.T) {
	t.Parallel()
	req := plugintest.Request("m", 100)
	for _, reg := range registrations {
		for _, params := range []string{``, `{"maxNumOfEndpoints":3}`, `{"maxNumOfEndpoints":1000}`} {
			p, err := reg.Factory("p", []byte(params), nil)
			if err != nil {
				t.Fatal(err)
			}
			plugintest.Picker(t, p.(scheduler.Picker), req)
		}
	}
}

// TestTopN checks the heap selection against a full sort.
func TestTopN(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 500 {
		m, n := 1+r.IntN(40), 1+r.IntN(12)
		all := make([]ranked, m)
		for i := range all {
			all[i] = ranked{major: float64(r.IntN(3)), minor: float64(r.IntN(3)), idx: i}
		}
		top := newTopN(min(n, m))
		for _, x := range all {
			top.offer(x)
		}
		want := slices.Clone(all)
		slices.SortFunc(want, func(a, b ranked) int {
			if a.above(b) {
				return -1
			}
			return 1
		})
		if diff := cmp.Diff(want[:min(n, m)], top.best(), cmp.AllowUnexported(ranked{})); diff != "" {
			t.Fatalf("trial %d (m=%d n=%d): (-want +got):\n%s", trial, m, n, diff)
		}
	}
}
