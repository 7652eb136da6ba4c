package scheduler_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/profiles"
	"github.com/openepp/openepp/pkg/scheduler"
)

// profileHook is a plain plugin (not the handler) that refers to profiles.
type profileHook struct {
	required []string
	check    func(names []string) error
}

func (*profileHook) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: "hook", Name: "hook"}
}
func (h *profileHook) RequiredProfiles() []string { return h.required }

// profileCheck also implements scheduler.ProfileChecker.
type profileCheck struct{ profileHook }

func (c *profileCheck) CheckProfiles(names []string) error { return c.check(names) }

// TestProfileUsersBeyondTheHandler: New checks the profile names every
// plugin refers to, not only the handler's, and gives ProfileCheckers the
// configured names, sorted.
func TestProfileUsersBeyondTheHandler(t *testing.T) {
	t.Parallel()
	handler := profiles.NewSingle("single")
	profile := func(name string) *scheduler.Profile { return &scheduler.Profile{Name: name, Picker: maxScore(t)} }
	var seen []string
	tests := []struct {
		name    string
		plugin  scheduler.Plugin
		wantErr string
	}{
		{name: "required profile exists", plugin: &profileHook{required: []string{"b"}}},
		{name: "required profile missing", plugin: &profileHook{required: []string{"x"}},
			wantErr: `scheduler: plugin hook needs a profile named "x"`},
		{name: "checker accepts", plugin: &profileCheck{profileHook{check: func(names []string) error { seen = names; return nil }}}},
		{name: "checker refuses", plugin: &profileCheck{profileHook{check: func(names []string) error { return fmt.Errorf("not with %v", names) }}},
			wantErr: "scheduler: plugin hook: not with [a b]"},
	}
	for _, tc := range tests {
		_, err := scheduler.New(scheduler.Options{Handler: handler, Profiles: []*scheduler.Profile{profile("b"), profile("a")},
			Plugins: []scheduler.Plugin{handler, tc.plugin}})
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.wantErr)
		}
	}
	if d := cmp.Diff([]string{"a", "b"}, seen); d != "" {
		t.Errorf("names given to CheckProfiles (-want +got)\n%s", d)
	}
}
