package scheduler

import (
	"fmt"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/request"
)

// Request is what plugins know about one inference request.
type Request struct {
	// ID is the x-request-id (generated when the client sent none).
	ID string
	// Model is the model the server must serve (after any rewrite);
	// IncomingModel is what the client asked for.
	Model         string
	IncomingModel string
	// Body is the parsed OpenAI body; nil for bodyless requests.
	Body *request.Body
	// Headers holds request headers with lower-case names.
	Headers map[string]string
	// Objective names the InferenceObjective from the objective header;
	// Priority is its priority (0 when unknown; negative means sheddable).
	Objective string
	Priority  int
	// FairnessID is the request's flow: its fairness header, else the
	// first FairnessSource's answer, else "default-flow".
	FairnessID string
	// Attributes holds the values AttributeSources published for the
	// request, by key; nil when there are none.
	Attributes map[string]string
	// Pool is the request's InferencePool, whose endpoints are its
	// candidates (an EPP of one named pool names it too); "" when the
	// endpoints belong to no pool.
	Pool string
	// QueueWait is how long admission (flow control) held the request
	// before it was scheduled: next to nothing on its fast path, 0 without
	// flow control.
	QueueWait time.Duration
}

// Prompt returns the raw prompt bytes used for prefix matching, or nil.
func (r *Request) Prompt() []byte {
	if r.Body == nil {
		return nil
	}
	return r.Body.Prompt
}

// Header returns the value of a header (name in lower case).
func (r *Request) Header(name string) string { return r.Headers[name] }

// Attribute returns the value an AttributeSource published under key, or "".
func (r *Request) Attribute(key string) string { return r.Attributes[key] }

// Response is what plugins know about the model server's response so far.
type Response struct {
	StatusCode int
	Headers    map[string]string
	// Streaming is true for server-sent-event responses.
	Streaming bool
	// Usage is filled once the server reported token usage (UsageKnown).
	Usage      request.Usage
	UsageKnown bool
	// Served is the endpoint the proxy reports having used, when it does.
	Served string
	// EndOfStream is set on the final chunk; Cancelled when the response
	// ended without one (client gone, upstream error, EPP shutdown,
	// eviction). Termination says which, once the response has ended.
	EndOfStream bool
	Cancelled   bool
	Termination TerminationCause
	// BodyBytes counts response body bytes seen so far.
	BodyBytes int
	// AddHeaders are response headers plugins want sent to the client (for
	// example a session token); only honoured when set in ResponseHeaders.
	AddHeaders map[string]string
	// Metadata is dynamic metadata plugins want sent to the proxy, by
	// namespace and key; only honoured when set in ReportResponse.
	Metadata map[string]map[string]any
}

// TerminationCause is why a response ended (llm-d's TerminationCause), set
// before ResponseComplete runs.
type TerminationCause uint8

const (
	// TerminationNone: the response has not ended yet.
	TerminationNone TerminationCause = iota
	// TerminationNatural: the response reached its end of stream, whatever
	// its status.
	TerminationNatural
	// TerminationClientDisconnect: the proxy ended the stream before the
	// response's end: the client went away, or the upstream failed and the
	// proxy gave up on it (the EPP cannot tell the two apart).
	TerminationClientDisconnect
	// TerminationEvicted: in-flight eviction ended the request to free room
	// for a higher priority (a 429 "evicted").
	TerminationEvicted
	// TerminationError: the EPP ended the stream on an error of its own (a
	// protocol violation, shutdown) or could not send the request on.
	TerminationError
)

var terminationNames = [...]string{"", "natural", "client-disconnect", "evicted", "error"}

// String returns llm-d's name of the cause ("" for TerminationNone).
func (c TerminationCause) String() string {
	if int(c) < len(terminationNames) {
		return terminationNames[c]
	}
	return fmt.Sprintf("termination(%d)", int(c))
}

// SetHeader asks for a response header to be sent to the client.
func (r *Response) SetHeader(name, value string) {
	if r.AddHeaders == nil {
		r.AddHeaders = map[string]string{}
	}
	r.AddHeaders[name] = value
}

// SetMetadata asks for key = value in the proxy's dynamic metadata under
// namespace; value is a float64, string or bool.
func (r *Response) SetMetadata(namespace, key string, value any) {
	if r.Metadata == nil {
		r.Metadata = map[string]map[string]any{}
	}
	if r.Metadata[namespace] == nil {
		r.Metadata[namespace] = map[string]any{}
	}
	r.Metadata[namespace][key] = value
}

// ProfileResult is the outcome of one profile run.
type ProfileResult struct {
	// Targets are the picked endpoints, primary first.
	Targets []*endpoint.Endpoint
	// Candidates, Totals and PerScorer explain the decision: the endpoints
	// that survived the filters, their weighted totals, and each scorer's
	// raw (clamped) score, index-aligned with Candidates.
	Candidates []*endpoint.Endpoint
	Totals     []float64
	PerScorer  []ScorerScores
}

// ScorerScores is one scorer's clamped output for a profile run.
type ScorerScores struct {
	Scorer TypedName
	Weight float64
	Scores []float64
}

// Result is the outcome of scheduling one request.
type Result struct {
	Profiles map[string]*ProfileResult
	// Primary names the profile whose targets receive the request.
	Primary string
	// PrefillProfile names the profile whose target computes the prompt
	// elsewhere (disaggregated serving), when its handler says; "" leaves
	// consumers to GIE's convention, a profile named "prefill".
	PrefillProfile string
	// Headers are extra request headers plugins want sent upstream (for
	// example the prefill endpoint in disaggregated serving).
	Headers map[string]string
	// RemovedHeaders are request headers plugins want stripped before the
	// request goes upstream (for example a client-sent header that only the
	// EPP may set).
	RemovedHeaders []string
}

// Targets returns the primary profile's targets, primary endpoint first.
func (r *Result) Targets() []*endpoint.Endpoint {
	if r == nil {
		return nil
	}
	if p := r.Profiles[r.Primary]; p != nil {
		return p.Targets
	}
	return nil
}

// DefaultPrefillProfile is GIE's convention for the prefill profile's name,
// used when a result does not name its own.
const DefaultPrefillProfile = "prefill"

// PrefillTarget returns the endpoint that computes the prompt apart from the
// primary target (disaggregated serving), or nil.
func (r *Result) PrefillTarget() *endpoint.Endpoint {
	if r == nil {
		return nil
	}
	name := r.PrefillProfile
	if name == "" {
		name = DefaultPrefillProfile
	}
	if p := r.Profiles[name]; name != r.Primary && p != nil && len(p.Targets) > 0 {
		return p.Targets[0]
	}
	return nil
}

// Servers returns the endpoints that will compute the request's prompt:
// the primary target, then the prefill target when another endpoint
// computes it (each nil when there is none). Plugins that remember where
// a prompt went record both.
func (r *Result) Servers() (primary, prefill *endpoint.Endpoint) {
	if t := r.Targets(); len(t) > 0 {
		primary = t[0]
	}
	if pf := r.PrefillTarget(); pf != primary {
		prefill = pf
	}
	return primary, prefill
}

// SetHeader records a request header to send upstream.
func (r *Result) SetHeader(name, value string) {
	if r.Headers == nil {
		r.Headers = map[string]string{}
	}
	r.Headers[name] = value
}

// RemoveHeader asks for a request header to be stripped upstream; a header
// set with SetHeader is sent regardless.
func (r *Result) RemoveHeader(name string) {
	r.RemovedHeaders = append(r.RemovedHeaders, name)
}

// Inbound is what a Responder knows of a request: its request line and
// headers, before any body.
type Inbound struct {
	Method string
	// Path is :path as received, query string included.
	Path string
	// Headers holds request headers with lower-case names.
	Headers map[string]string
}

// Reply is a Responder's answer, sent to the client as is instead of a
// model server's.
type Reply struct {
	// Status is the HTTP status code.
	Status      int
	ContentType string
	Body        []byte
}
