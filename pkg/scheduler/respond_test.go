package scheduler_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// keepFirst is a screener keeping the first n candidates and recording
// what it saw.
type keepFirst struct {
	name string
	n    int
	saw  []int
}

func (k *keepFirst) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: "keep-first", Name: k.name}
}

func (k *keepFirst) Screen(_ context.Context, _ *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint) []*endpoint.Endpoint {
	k.saw = append(k.saw, len(eps))
	return eps[:min(k.n, len(eps))]
}

// bothProfiles runs every profile once; the primary is "b".
type bothProfiles struct{}

func (bothProfiles) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: "both", Name: "both"}
}

func (bothProfiles) Pick(_ context.Context, _ *scheduler.State, _ *scheduler.Request, ps map[string]*scheduler.Profile, done map[string]*scheduler.ProfileResult) []*scheduler.Profile {
	if len(done) > 0 {
		return nil
	}
	return []*scheduler.Profile{ps["a"], ps["b"]}
}

func (bothProfiles) ProcessResults(_ context.Context, _ *scheduler.State, _ *scheduler.Request, rs map[string]*scheduler.ProfileResult) (*scheduler.Result, error) {
	return &scheduler.Result{Profiles: rs, Primary: "b"}, nil
}

// TestScreenersNarrowEveryProfile: screeners run in order before anything
// else, each on the previous one's output, and every profile sees only
// what they kept.
func TestScreenersNarrowEveryProfile(t *testing.T) {
	t.Parallel()
	first, second := &keepFirst{name: "first", n: 3}, &keepFirst{name: "second", n: 2}
	s, err := scheduler.New(scheduler.Options{Handler: bothProfiles{}, Plugins: []scheduler.Plugin{first, second},
		Profiles: []*scheduler.Profile{{Name: "a", Picker: maxScore(t)}, {Name: "b", Picker: maxScore(t)}}})
	if err != nil {
		t.Fatal(err)
	}
	eps := plugintest.Endpoints(5, 1)
	res, err := s.Schedule(context.Background(), s.NewState(), plugintest.Request("m", 10), eps)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]int{5}, first.saw); d != "" {
		t.Errorf("first saw (-want +got)\n%s", d)
	}
	if d := cmp.Diff([]int{3}, second.saw); d != "" {
		t.Errorf("second saw (-want +got)\n%s", d)
	}
	for _, p := range []string{"a", "b"} {
		if d := cmp.Diff(names(eps[:2]), names(res.Profiles[p].Candidates)); d != "" {
			t.Errorf("profile %s candidates (-want +got)\n%s", p, d)
		}
	}

	none := &keepFirst{name: "none", n: 0}
	s, err = scheduler.New(scheduler.Options{Handler: bothProfiles{}, Plugins: []scheduler.Plugin{none},
		Profiles: []*scheduler.Profile{{Name: "a", Picker: maxScore(t)}, {Name: "b", Picker: maxScore(t)}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Schedule(context.Background(), s.NewState(), plugintest.Request("m", 10), eps)
	if !errors.Is(err, scheduler.ErrNoCandidates) || !strings.Contains(err.Error(), "none/keep-first") || !strings.Contains(err.Error(), `"m"`) {
		t.Errorf("error %v: want ErrNoCandidates naming the screener and the model", err)
	}
}

// answerer answers requests for path with body.
type answerer struct {
	name, path, body string
	asked            int
}

func (a *answerer) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: "answerer", Name: a.name}
}

func (a *answerer) Respond(_ context.Context, in *scheduler.Inbound, eps []*endpoint.Endpoint) (scheduler.Reply, bool) {
	a.asked++
	if in.Path != a.path {
		return scheduler.Reply{}, false
	}
	return scheduler.Reply{Status: 200, ContentType: "text/plain", Body: []byte(a.body + ":" + eps[0].Name)}, true
}

func TestFirstResponderAnswers(t *testing.T) {
	t.Parallel()
	plain, err := scheduler.New(scheduler.Options{Handler: bothProfiles{}, Profiles: []*scheduler.Profile{{Name: "b", Picker: maxScore(t)}}})
	if err != nil {
		t.Fatal(err)
	}
	if plain.Responds() {
		t.Error("a scheduler without responders says it responds")
	}
	x, y := &answerer{name: "x", path: "/x", body: "from x"}, &answerer{name: "y", path: "/x", body: "from y"}
	z := &answerer{name: "z", path: "/z", body: "from z"}
	s, err := scheduler.New(scheduler.Options{Handler: bothProfiles{}, Plugins: []scheduler.Plugin{x, y, z},
		Profiles: []*scheduler.Profile{{Name: "b", Picker: maxScore(t)}}})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Responds() {
		t.Fatal("Responds() is false with three responders")
	}
	eps := plugintest.Endpoints(2, 1)
	reply, ok := s.Respond(context.Background(), &scheduler.Inbound{Method: "GET", Path: "/x"}, eps)
	if !ok || string(reply.Body) != "from x:"+eps[0].Name || y.asked != 0 {
		t.Errorf("reply %v %q; y asked %d times", ok, reply.Body, y.asked)
	}
	if reply, ok := s.Respond(context.Background(), &scheduler.Inbound{Method: "GET", Path: "/z"}, eps); !ok || string(reply.Body) != "from z:"+eps[0].Name {
		t.Errorf("reply %v %q", ok, reply.Body)
	}
	if _, ok := s.Respond(context.Background(), &scheduler.Inbound{Method: "GET", Path: "/other"}, eps); ok {
		t.Error("a request nobody answers was answered")
	}
}
