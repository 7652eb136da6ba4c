package profiles

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/openepp/openepp/pkg/scheduler"
)

// HeaderType is the type name of Header.
const HeaderType = "header-profile-handler"

// Defaults of HeaderParams (llm-d's).
const (
	defaultProfileHeader = "EPP-Profile"
	defaultHeaderProfile = "decode"
)

// HeaderParams configures Header (llm-d's parameters).
type HeaderParams struct {
	HeaderName     string `json:"headerName" doc:"request header naming the profile to run (matched case-insensitively)" default:"EPP-Profile"`
	DefaultProfile string `json:"defaultProfile" doc:"the profile run when the header is missing or blank; must exist when more than one profile is configured" default:"decode"`
}

func (p *HeaderParams) validate() error {
	var errs []error
	if strings.TrimSpace(p.HeaderName) == "" {
		errs = append(errs, errors.New("headerName: must not be empty"))
	}
	if p.DefaultProfile == "" {
		errs = append(errs, errors.New("defaultProfile: must not be empty"))
	}
	return errors.Join(errs...)
}

// Header runs the one profile a request header names (llm-d's
// header-profile-handler), for a caller such as llm-d's coordinator that
// knows which stage each call is for and makes one call per stage.
//
// Inputs: the request header headerName ("EPP-Profile"). Parameters:
// headerName, defaultProfile ("decode"). Rule: with a single profile
// configured, run it whatever the header says. Otherwise run the profile
// the header names (exact, case-sensitive match), or defaultProfile when
// the header is missing or blank; the profile that ran is primary. A header
// naming a profile that does not exist fails the request with
// scheduler.ErrInvalidRequest (400 with the reason; llm-d answers 429),
// since a retry cannot help. defaultProfile must exist when more than one
// profile is configured (checked when the config is built; llm-d fails
// each headerless request instead).
type Header struct {
	name   scheduler.TypedName
	header string // lower case, as the EPP stores request headers
	shown  string // as configured, for messages
	def    string
}

var (
	_ scheduler.ProfileHandler = (*Header)(nil)
	_ scheduler.ProfileChecker = (*Header)(nil)
)

// headerChoice is what Pick decided, for ProcessResults.
type headerChoice struct {
	profile string // the profile run, or the unknown one asked for
	unknown bool
}

var headerChoiceKey = scheduler.NewKey[headerChoice]("header-profile-choice")

// NewHeader validates p and returns the handler called name.
func NewHeader(name string, p HeaderParams) (*Header, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	shown := strings.TrimSpace(p.HeaderName)
	return &Header{name: scheduler.TypedName{Type: HeaderType, Name: name}, header: strings.ToLower(shown), shown: shown,
		def: p.DefaultProfile}, nil
}

// HeaderFactory builds a Header from config.
func HeaderFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	p := HeaderParams{HeaderName: defaultProfileHeader, DefaultProfile: defaultHeaderProfile}
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	h, err := NewHeader(name, p)
	if err != nil {
		return nil, err
	}
	return h, nil
}

// HeaderRegistration describes the plugin type for the registry.
func HeaderRegistration() scheduler.Registration {
	return scheduler.Registration{Type: HeaderType, Factory: HeaderFactory, Params: HeaderParams{},
		Summary: "Runs the one profile a request header names (defaultProfile without the header); an unknown name is answered with 400."}
}

// TypedName implements scheduler.Plugin.
func (h *Header) TypedName() scheduler.TypedName { return h.name }

// CheckProfiles implements scheduler.ProfileChecker: with a choice to make,
// defaultProfile must be one of the choices.
func (h *Header) CheckProfiles(names []string) error {
	if len(names) > 1 && !slices.Contains(names, h.def) {
		return fmt.Errorf("defaultProfile: no profile named %q among %q; requests without the %s header would have none to run",
			h.def, names, h.shown)
	}
	return nil
}

// Pick implements scheduler.ProfileHandler: the chosen profile, once.
func (h *Header) Pick(_ context.Context, state *scheduler.State, req *scheduler.Request, profiles map[string]*scheduler.Profile, results map[string]*scheduler.ProfileResult) []*scheduler.Profile {
	if len(results) > 0 {
		return nil
	}
	c := h.choose(req, profiles)
	headerChoiceKey.Set(state, c)
	if c.unknown {
		return nil
	}
	return []*scheduler.Profile{profiles[c.profile]}
}

// choose applies the type's rule.
func (h *Header) choose(req *scheduler.Request, profiles map[string]*scheduler.Profile) headerChoice {
	if len(profiles) == 1 {
		for name := range profiles {
			return headerChoice{profile: name}
		}
	}
	name := ""
	if req != nil {
		name = strings.TrimSpace(req.Header(h.header))
	}
	if name == "" {
		name = h.def
	}
	_, ok := profiles[name]
	return headerChoice{profile: name, unknown: !ok}
}

// ProcessResults implements scheduler.ProfileHandler: the profile that ran
// is primary.
func (h *Header) ProcessResults(_ context.Context, state *scheduler.State, _ *scheduler.Request, results map[string]*scheduler.ProfileResult) (*scheduler.Result, error) {
	c, _ := headerChoiceKey.Get(state)
	if c.unknown {
		return nil, fmt.Errorf("header %s names profile %q, which is not configured: %w", h.shown, c.profile, scheduler.ErrInvalidRequest)
	}
	r, ran := results[c.profile]
	switch {
	case !ran:
		return nil, fmt.Errorf("no profile ran: %w", scheduler.ErrNoCandidates)
	case r == nil:
		return nil, fmt.Errorf("profile %q failed: %w", c.profile, scheduler.ErrNoCandidates)
	}
	return &scheduler.Result{Profiles: results, Primary: c.profile}, nil
}
