package flowcontrol_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/flowcontrol"
	"github.com/openepp/openepp/pkg/scheduler"
)

func TestRegistrations(t *testing.T) {
	t.Parallel()
	regs := []scheduler.Registration{
		flowcontrol.GlobalStrictRegistration(), flowcontrol.RoundRobinRegistration(),
		flowcontrol.FCFSRegistration(), flowcontrol.EDFRegistration(), flowcontrol.SLODeadlineRegistration(),
		flowcontrol.StaticUsageLimitRegistration(),
	}
	wantTypes := []string{
		"global-strict-fairness-policy", "round-robin-fairness-policy", "fcfs-ordering-policy",
		"edf-ordering-policy", "slo-deadline-ordering-policy", "static-usage-limit-policy",
	}
	reg := scheduler.NewRegistry()
	for i, r := range regs {
		if err := reg.Register(r); err != nil {
			t.Fatal(err)
		}
		if r.Type != wantTypes[i] || r.Summary == "" || strings.Contains(r.Summary, "\n") {
			t.Errorf("registration %d: type %q, summary %q", i, r.Type, r.Summary)
		}
		p, err := r.Factory("mine", nil, nil)
		if err != nil {
			t.Fatalf("%s with no params: %v", r.Type, err)
		}
		if got := p.TypedName(); got != (scheduler.TypedName{Type: r.Type, Name: "mine"}) {
			t.Errorf("%s: TypedName() = %v", r.Type, got)
		}
		if _, err := r.Factory("mine", []byte(`{"bogus":1}`), nil); err == nil || !strings.Contains(err.Error(), "bogus") {
			t.Errorf("%s accepted an unknown parameter: %v", r.Type, err)
		}
	}
}

func TestStaticUsageLimitParams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		params  string
		want    float64
		wantErr string
	}{
		{params: ``, want: 1},
		{params: `{}`, want: 1},
		{params: `{"threshold":0.8}`, want: 0.8},
		{params: `{"threshold":1.5}`, want: 1.5},
		{params: `{"threshold":0}`, wantErr: "threshold: must be a finite number > 0, got 0"},
		{params: `{"threshold":-1}`, wantErr: "threshold: must be a finite number > 0, got -1"},
		{params: `{"threshold":"high"}`, wantErr: "parameters: json"},
		{params: `{"priorityThresholds":{"x":0.5}}`, wantErr: `priorityThresholds: key "x" is not an integer priority`},
		{params: `{"priorityThresholds":{"-1":0}}`, wantErr: "priorityThresholds[-1]: must be a finite number > 0, got 0"},
	}
	for _, tc := range tests {
		p, err := flowcontrol.StaticUsageLimitFactory("s", []byte(tc.params), nil)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("params %s: error %v; want %q", tc.params, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("params %s: %v", tc.params, err)
		}
		u := p.(scheduler.UsageLimitPolicy)
		for _, prio := range []int{-5, 0, 7} {
			if got := u.Ceiling(prio); got != tc.want {
				t.Errorf("params %s: Ceiling(%d) = %v; want %v", tc.params, prio, got, tc.want)
			}
		}
	}
}

func TestOrderingPolicies(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	q := func(seq uint64, enq, deadline, slo time.Time) *scheduler.QueuedRequest {
		return &scheduler.QueuedRequest{Seq: seq, Enqueued: enq, Deadline: deadline, SLODeadline: slo}
	}
	var none time.Time
	tests := []struct {
		name   string
		policy scheduler.OrderingPolicy
		a, b   *scheduler.QueuedRequest
		want   bool
	}{
		{"fcfs earlier enqueue", flowcontrol.NewFCFS(""), q(2, at(0), none, none), q(1, at(1), none, none), true},
		{"fcfs tie by seq", flowcontrol.NewFCFS(""), q(2, at(0), none, none), q(1, at(0), none, none), false},
		{"fcfs ignores deadlines", flowcontrol.NewFCFS(""), q(2, at(1), at(2), none), q(1, at(0), at(9), none), false},
		{"edf earlier deadline", flowcontrol.NewEDF(""), q(2, at(1), at(2), none), q(1, at(0), at(9), none), true},
		{"edf none goes last", flowcontrol.NewEDF(""), q(1, at(0), none, none), q(2, at(1), at(9), none), false},
		{"edf one before none", flowcontrol.NewEDF(""), q(2, at(1), at(9), none), q(1, at(0), none, none), true},
		{"edf tie is fcfs", flowcontrol.NewEDF(""), q(1, at(0), at(5), none), q(2, at(0), at(5), none), true},
		{"edf both none is fcfs", flowcontrol.NewEDF(""), q(2, at(1), none, none), q(1, at(0), none, none), false},
		{"slo earlier", flowcontrol.NewSLODeadline(""), q(2, at(1), none, at(2)), q(1, at(0), none, at(3)), true},
		{"slo none last", flowcontrol.NewSLODeadline(""), q(1, at(0), at(1), none), q(2, at(1), none, at(9)), false},
		{"slo ignores deadline", flowcontrol.NewSLODeadline(""), q(2, at(1), at(1), at(5)), q(1, at(0), at(9), at(5)), false},
	}
	for _, tc := range tests {
		if got := tc.policy.Less(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: Less = %v; want %v", tc.name, got, tc.want)
		}
		if tc.policy.Less(tc.a, tc.a) {
			t.Errorf("%s: Less(a, a) is true", tc.name)
		}
	}
}

func TestGlobalStrictChooser(t *testing.T) {
	t.Parallel()
	heads := []*scheduler.QueuedRequest{
		{FlowID: "a", Seq: 3, Enqueued: time.Unix(3, 0)},
		{FlowID: "b", Seq: 1, Enqueued: time.Unix(1, 0)},
		{FlowID: "c", Seq: 2, Enqueued: time.Unix(2, 0)},
	}
	ch := flowcontrol.NewGlobalStrict("").NewChooser()
	if got := ch.Choose(heads, flowcontrol.NewFCFS("")); got != 1 {
		t.Errorf("Choose = %d; want 1 (earliest head)", got)
	}
}

// TestRoundRobinChooser walks a band whose flows come and go.
func TestRoundRobinChooser(t *testing.T) {
	t.Parallel()
	ch := flowcontrol.NewRoundRobin("").NewChooser()
	order := flowcontrol.NewFCFS("")
	choose := func(flows ...string) string {
		heads := make([]*scheduler.QueuedRequest, len(flows))
		for i, f := range flows {
			heads[i] = &scheduler.QueuedRequest{FlowID: f}
		}
		return flows[ch.Choose(heads, order)]
	}
	var got []string
	got = append(got, choose("a", "b", "c"))      // a; rotation b c a
	got = append(got, choose("a", "b", "c"))      // b; rotation c a b
	got = append(got, choose("a", "c"))           // b emptied: c; rotation a b c
	got = append(got, choose("a", "b", "c"))      // b refilled, kept its place: a
	got = append(got, choose("a", "b", "c", "d")) // b; d joins behind a: c a d b
	got = append(got, choose("a", "c", "d"))      // c
	got = append(got, choose("a", "d"))           // a
	got = append(got, choose("a", "d"))           // d
	if diff := cmp.Diff([]string{"a", "b", "c", "a", "b", "c", "a", "d"}, got); diff != "" {
		t.Errorf("turns (-want +got):\n%s", diff)
	}
}

// TestStaticUsageLimitPerPriority: an entry covers its priority and the
// lower ones down to the next entry; priorities above every entry use the
// common threshold.
func TestStaticUsageLimitPerPriority(t *testing.T) {
	t.Parallel()
	p, err := flowcontrol.StaticUsageLimitFactory("s", []byte(`{"threshold":0.9,"priorityThresholds":{"-1":0.7,"5":1.2}}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	u := p.(scheduler.UsageLimitPolicy)
	for prio, want := range map[int]float64{-9: 0.7, -1: 0.7, 0: 1.2, 5: 1.2, 6: 0.9} {
		if got := u.Ceiling(prio); got != want {
			t.Errorf("Ceiling(%d) = %v; want %v", prio, got, want)
		}
	}
}
