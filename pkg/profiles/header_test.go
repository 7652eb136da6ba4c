package profiles

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/pickers"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scheduler/plugintest"
)

// roleFilter keeps the endpoints whose "role" label is role.
type roleFilter struct{ role string }

func (f roleFilter) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: "role", Name: f.role}
}

func (f roleFilter) Filter(_ context.Context, _ *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint) []*endpoint.Endpoint {
	var out []*endpoint.Endpoint
	for _, e := range eps {
		if e.Labels["role"] == f.role {
			out = append(out, e)
		}
	}
	return out
}

// headerScheduler runs a header-profile-handler built from params over one
// profile per role, each keeping the endpoints of its role.
func headerScheduler(t *testing.T, params string, roles ...string) (*scheduler.Scheduler, error) {
	t.Helper()
	p, err := HeaderFactory("hp", []byte(params), nil)
	if err != nil {
		t.Fatal(err)
	}
	picker, err := pickers.NewMaxScore("max", pickers.Params{MaxNumOfEndpoints: 1})
	if err != nil {
		t.Fatal(err)
	}
	var profiles []*scheduler.Profile
	for _, r := range roles {
		profiles = append(profiles, &scheduler.Profile{Name: r, Filters: []scheduler.Filter{roleFilter{r}}, Picker: picker})
	}
	h := p.(*Header)
	return scheduler.New(scheduler.Options{Handler: h, Profiles: profiles, Plugins: []scheduler.Plugin{h}})
}

func roleEndpoints(roles ...string) []*endpoint.Endpoint {
	out := plugintest.Endpoints(len(roles), 1)
	for i, r := range roles {
		out[i] = endpoint.New(endpoint.Spec{Name: r, Address: out[i].Address, Port: 8000, Labels: map[string]string{"role": r}})
	}
	return out
}

func TestHeaderProfileHandler(t *testing.T) {
	t.Parallel()
	eps := roleEndpoints("encode", "prefill", "decode")
	tests := []struct {
		name, params string
		roles        []string
		header       map[string]string
		wantPrimary  string
		wantErr      error
	}{
		{name: "header names the profile", roles: []string{"encode", "prefill", "decode"},
			header: map[string]string{"epp-profile": "prefill"}, wantPrimary: "prefill"},
		{name: "no header: defaultProfile", roles: []string{"encode", "prefill", "decode"}, wantPrimary: "decode"},
		{name: "blank header: defaultProfile", roles: []string{"prefill", "decode"}, header: map[string]string{"epp-profile": " "},
			wantPrimary: "decode"},
		{name: "custom header and default", params: `{"headerName":"X-Stage","defaultProfile":"prefill"}`, roles: []string{"prefill", "decode"},
			header: map[string]string{"x-stage": "decode"}, wantPrimary: "decode"},
		{name: "custom default used", params: `{"headerName":"X-Stage","defaultProfile":"prefill"}`, roles: []string{"prefill", "decode"},
			header: map[string]string{"epp-profile": "decode"}, wantPrimary: "prefill"},
		{name: "one profile runs whatever the header says", roles: []string{"encode"}, header: map[string]string{"epp-profile": "nope"},
			wantPrimary: "encode"},
		{name: "unknown profile: invalid request", roles: []string{"prefill", "decode"}, header: map[string]string{"epp-profile": "Decode"},
			wantErr: scheduler.ErrInvalidRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := headerScheduler(t, tc.params, tc.roles...)
			if err != nil {
				t.Fatal(err)
			}
			req := plugintest.Request("m", 10)
			for k, v := range tc.header {
				req.Headers[k] = v
			}
			res, err := s.Schedule(context.Background(), s.NewState(), req, eps)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || errors.Is(err, scheduler.ErrNoCandidates) {
					t.Fatalf("err = %v, want %v only", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Primary != tc.wantPrimary || len(res.Profiles) != 1 || res.Targets()[0].Name != tc.wantPrimary {
				t.Errorf("primary %q, profiles %d, target %s; want only %q", res.Primary, len(res.Profiles), res.Targets()[0].Name, tc.wantPrimary)
			}
		})
	}
}

// TestHeaderProfileFailures: an unknown name is reported with its reason;
// a profile that finds no endpoint fails the request as no candidates.
func TestHeaderProfileFailures(t *testing.T) {
	t.Parallel()
	s, err := headerScheduler(t, "", "prefill", "decode")
	if err != nil {
		t.Fatal(err)
	}
	req := plugintest.Request("m", 10)
	req.Headers["epp-profile"] = "gpu-large"
	_, err = s.Schedule(context.Background(), s.NewState(), req, roleEndpoints("decode"))
	if err == nil || !strings.Contains(err.Error(), `header EPP-Profile names profile "gpu-large", which is not configured`) {
		t.Errorf("unknown profile: err = %v", err)
	}
	req.Headers["epp-profile"] = "prefill"
	_, err = s.Schedule(context.Background(), s.NewState(), req, roleEndpoints("decode"))
	if !errors.Is(err, scheduler.ErrNoCandidates) {
		t.Errorf("no prefill endpoint: err = %v, want ErrNoCandidates", err)
	}
}

func TestHeaderProfileParams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, params string
		roles        []string
		wantErr      string
	}{
		{name: "defaults", roles: []string{"prefill", "decode"}},
		{name: "default profile missing, one profile: fine", roles: []string{"default"}},
		{name: "default profile missing", roles: []string{"prefill", "encode"},
			wantErr: `defaultProfile: no profile named "decode" among ["encode" "prefill"]; requests without the EPP-Profile header`},
		{name: "custom default missing", params: `{"defaultProfile":"p"}`, roles: []string{"prefill", "decode"}, wantErr: `no profile named "p"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := headerScheduler(t, tc.params, tc.roles...)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatal(err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
	for _, bad := range []struct{ params, want string }{
		{`{"headerName":""}`, "headerName: must not be empty"},
		{`{"defaultProfile":""}`, "defaultProfile: must not be empty"},
		{`{"header":"x"}`, `unknown field "header"`},
		{`{"defaultProfile":1}`, "parameters:"},
	} {
		if _, err := HeaderFactory("hp", []byte(bad.params), nil); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: err = %v, want %q", bad.params, err, bad.want)
		}
	}
}
