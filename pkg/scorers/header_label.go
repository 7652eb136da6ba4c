package scorers

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// HeaderLabelType is the type name of HeaderLabel.
const HeaderLabelType = "header-label-affinity-scorer"

// HeaderLabelParams configures HeaderLabel (llm-d's parameters).
type HeaderLabelParams struct {
	HeaderName string `json:"headerName" doc:"request header holding the preferred label value (required; matched case-insensitively)" default:""`
	LabelKey   string `json:"labelKey" doc:"endpoint label compared with the header (required)" default:""`
	// StampResponseHeader lets a coordinator learn where the request went
	// and ask for the same place next time.
	StampResponseHeader *bool `json:"stampResponseHeader" doc:"set headerName on the response to labelKey's value on the endpoint that served the request (nothing when it lacks the label)" default:"true"`
}

func (p *HeaderLabelParams) validate() error {
	var errs []error
	if strings.TrimSpace(p.HeaderName) == "" {
		errs = append(errs, errors.New("headerName: required"))
	}
	if p.LabelKey == "" {
		errs = append(errs, errors.New("labelKey: required"))
	}
	return errors.Join(errs...)
}

// HeaderLabel is a soft affinity for endpoints whose label equals a request
// header (llm-d's header-label-affinity-scorer), e.g. the slice or zone an
// earlier stage of the same work was served in.
//
// Inputs: the request header headerName and each endpoint's label labelKey.
// Parameters: headerName and labelKey (both required), stampResponseHeader
// (true). Formula: 1 when the header is present and non-empty and the
// endpoint's label equals it exactly; 0 otherwise (no header, an unknown
// value, or an endpoint without the label), so the other scorers decide.
//
// With stampResponseHeader, ResponseHeaders sets headerName on the response
// to the label of the endpoint that served the request (the one the proxy
// reports, else the primary target), so a client can send it back.
type HeaderLabel struct {
	name   scheduler.TypedName
	header string // lower case, as the EPP stores request headers
	out    string // response header, as configured
	label  string
	stamp  bool
	handle *scheduler.Handle
}

// headerLabelNote carries one instance's pick from PreRequest to
// ResponseHeaders; instances chain their notes under one key.
type headerLabelNote struct {
	owner   *HeaderLabel
	targets []*endpoint.Endpoint
	next    *headerLabelNote
}

var headerLabelKey = scheduler.NewKey[*headerLabelNote]("header-label-affinity-pick")

var (
	_ scheduler.ScoreWriter     = (*HeaderLabel)(nil)
	_ scheduler.PreRequest      = (*HeaderLabel)(nil)
	_ scheduler.ResponseHeaders = (*HeaderLabel)(nil)
)

// NewHeaderLabel validates p and returns the scorer called name; h (may be
// nil) gives the pool, to find a fallback endpoint that served a request.
func NewHeaderLabel(name string, p HeaderLabelParams, h *scheduler.Handle) (*HeaderLabel, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	out := strings.TrimSpace(p.HeaderName)
	return &HeaderLabel{
		name:   scheduler.TypedName{Type: HeaderLabelType, Name: name},
		header: strings.ToLower(out), out: out, label: p.LabelKey,
		stamp:  p.StampResponseHeader == nil || *p.StampResponseHeader,
		handle: h,
	}, nil
}

// HeaderLabelFactory builds a HeaderLabel from config.
func HeaderLabelFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	var p HeaderLabelParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	s, err := NewHeaderLabel(name, p, h)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// HeaderLabelRegistration describes the plugin type for the registry.
func HeaderLabelRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type: HeaderLabelType, Factory: HeaderLabelFactory, Params: HeaderLabelParams{},
		Summary: "Prefers endpoints whose label labelKey equals the request header headerName: 1, else 0; " +
			"stamps the serving endpoint's label on the response.",
	}
}

// TypedName implements scheduler.Plugin.
func (s *HeaderLabel) TypedName() scheduler.TypedName { return s.name }

// Score implements scheduler.Scorer.
func (s *HeaderLabel) Score(ctx context.Context, state *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint) []float64 {
	out := make([]float64, len(eps))
	s.ScoreInto(ctx, state, req, eps, out)
	return out
}

// ScoreInto implements scheduler.ScoreWriter.
func (s *HeaderLabel) ScoreInto(_ context.Context, _ *scheduler.State, req *scheduler.Request, eps []*endpoint.Endpoint, out []float64) {
	want := ""
	if req != nil {
		want = req.Header(s.header)
	}
	if want == "" {
		return
	}
	for i, e := range eps {
		if v, ok := e.Labels[s.label]; ok && v == want {
			out[i] = 1
		}
	}
}

// PreRequest implements scheduler.PreRequest: remember the targets for
// ResponseHeaders.
func (s *HeaderLabel) PreRequest(_ context.Context, state *scheduler.State, _ *scheduler.Request, result *scheduler.Result) {
	targets := result.Targets()
	if !s.stamp || state == nil || len(targets) == 0 {
		return
	}
	head, _ := headerLabelKey.Get(state)
	headerLabelKey.Set(state, &headerLabelNote{owner: s, targets: targets, next: head})
}

// ResponseHeaders implements scheduler.ResponseHeaders: stamp the serving
// endpoint's label.
func (s *HeaderLabel) ResponseHeaders(_ context.Context, state *scheduler.State, _ *scheduler.Request, resp *scheduler.Response) {
	if !s.stamp || state == nil {
		return
	}
	n := s.note(state)
	if n == nil {
		return
	}
	e := n.targets[0]
	if served := strings.TrimSpace(resp.Served); served != "" && served != e.HostPort {
		e = servedEndpoint(s.handle, n.targets, served)
	}
	if e == nil {
		return
	}
	if v, ok := e.Labels[s.label]; ok {
		resp.SetHeader(s.out, v)
	}
}

// note finds this instance's note in state.
func (s *HeaderLabel) note(state *scheduler.State) *headerLabelNote {
	n, _ := headerLabelKey.Get(state)
	for n != nil && n.owner != s {
		n = n.next
	}
	return n
}
