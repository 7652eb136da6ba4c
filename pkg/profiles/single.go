// Package profiles holds the built-in profile handlers.
package profiles

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/openepp/openepp/pkg/scheduler"
)

// SingleType is the type name of Single.
const SingleType = "single-profile-handler"

// Single runs the only configured profile once and makes it primary. It takes
// no parameters.
type Single struct {
	name scheduler.TypedName
}

var _ scheduler.ProfileHandler = (*Single)(nil)

// NewSingle returns a single-profile handler called name.
func NewSingle(name string) *Single {
	return &Single{name: scheduler.TypedName{Type: SingleType, Name: name}}
}

// SingleFactory builds a Single from config.
func SingleFactory(name string, params json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	var p struct{}
	if err := scheduler.DecodeParams(params, &p); err != nil {
		return nil, err
	}
	return NewSingle(name), nil
}

// TypedName implements scheduler.Plugin.
func (s *Single) TypedName() scheduler.TypedName { return s.name }

// Pick returns the only profile until it has a result (nil results count).
func (s *Single) Pick(_ context.Context, _ *scheduler.State, _ *scheduler.Request, profiles map[string]*scheduler.Profile, results map[string]*scheduler.ProfileResult) []*scheduler.Profile {
	if len(results) > 0 {
		return nil
	}
	for _, p := range profiles {
		if _, done := results[p.Name]; !done {
			return []*scheduler.Profile{p}
		}
	}
	return nil
}

// ProcessResults makes the one profile primary.
func (s *Single) ProcessResults(_ context.Context, _ *scheduler.State, _ *scheduler.Request, results map[string]*scheduler.ProfileResult) (*scheduler.Result, error) {
	for name, r := range results {
		if r == nil {
			return nil, fmt.Errorf("profile %q failed: %w", name, scheduler.ErrNoCandidates)
		}
		return &scheduler.Result{Profiles: results, Primary: name}, nil
	}
	return nil, fmt.Errorf("no profile ran: %w", scheduler.ErrNoCandidates)
}

// SingleRegistration describes the plugin type for the registry.
func SingleRegistration() scheduler.Registration {
	return scheduler.Registration{Type: SingleType, Factory: SingleFactory, Params: struct{}{},
		Summary: "Runs the only scheduling profile and makes it primary."}
}
