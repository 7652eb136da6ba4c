package scheduler

import (
	"context"
	"time"

	"github.com/openepp/openepp/pkg/endpoint"
)

// TypedName names one configured plugin instance: Type is the registered
// kebab-case type (e.g. "queue-scorer"), Name the instance name from the
// config file (defaults to Type).
type TypedName struct {
	Type string
	Name string
}

func (t TypedName) String() string {
	if t.Name == "" || t.Name == t.Type {
		return t.Type
	}
	return t.Name + "/" + t.Type
}

// Plugin is implemented by every plugin instance. A plugin implements one or
// more of the extension-point interfaces below; the framework discovers which
// by type assertion.
//
// The ctx every extension point gets carries the request's trace span when
// the EPP traces (gateway.request_orchestration while scheduling,
// gateway.request after): a plugin with work worth seeing in a trace starts
// a child from trace.SpanFromContext(ctx).TracerProvider().
type Plugin interface {
	TypedName() TypedName
}

// Filter removes endpoints that must not serve the request.
//
// Called once per profile run, possibly concurrently for different requests.
// It must return a subset of endpoints in input order; it may return the input
// slice itself when it keeps everything, and must never modify the input
// slice or the endpoints. Returning an empty slice fails the profile with an
// error naming this filter.
type Filter interface {
	Plugin
	Filter(ctx context.Context, state *State, req *Request, endpoints []*endpoint.Endpoint) []*endpoint.Endpoint
}

// Scorer rates every candidate endpoint for the request.
//
// Called once per profile run, possibly concurrently for different requests.
// It returns a new slice index-aligned with endpoints (len equal), each value
// in [0, 1], higher meaning better. The runner clamps out-of-range values and
// counts them as violations; a scorer returning the wrong length is ignored
// for that request. It must not modify its inputs.
type Scorer interface {
	Plugin
	Score(ctx context.Context, state *State, req *Request, endpoints []*endpoint.Endpoint) []float64
}

// ScoreWriter is an optional interface of a Scorer: ScoreInto writes what
// Score would return into out, a zeroed slice with len(out) ==
// len(endpoints) that the profile run owns, so the run keeps every
// scorer's output in one allocation instead of one per scorer (the
// scorers on the default path implement it). The Scorer contract applies
// otherwise; out must not be retained.
type ScoreWriter interface {
	Scorer
	ScoreInto(ctx context.Context, state *State, req *Request, endpoints []*endpoint.Endpoint, out []float64)
}

// Scored is an endpoint with its weighted total score.
type Scored struct {
	Endpoint *endpoint.Endpoint
	Score    float64
}

// Picker chooses the target endpoints from the scored candidates.
//
// Called once per profile run with at least one candidate, possibly
// concurrently. The returned endpoints are ordered: the first is the primary
// target and the rest form the fallback list. It may reorder the scored slice
// (it is owned by this call) but must not modify the endpoints. Randomness
// must come from state.Rand so that runs are reproducible for a seed.
type Picker interface {
	Plugin
	Pick(ctx context.Context, state *State, req *Request, scored []Scored) ([]*endpoint.Endpoint, error)
}

// ProfileHandler decides which profiles run and how their results combine.
//
// Pick is called repeatedly with the results so far and returns the profiles
// to run next; an empty return ends the cycle. ProcessResults then turns the
// results (nil for a failed profile) into the final Result, choosing the
// primary profile. Exactly one handler is configured.
type ProfileHandler interface {
	Plugin
	Pick(ctx context.Context, state *State, req *Request, profiles map[string]*Profile, results map[string]*ProfileResult) []*Profile
	ProcessResults(ctx context.Context, state *State, req *Request, results map[string]*ProfileResult) (*Result, error)
}

// ProfileUser is implemented by plugins that refer to profiles by name (the
// profile handler, or a hook reading a profile's result); New refuses a
// configuration that lacks one of RequiredProfiles.
type ProfileUser interface {
	RequiredProfiles() []string
}

// ProfileChecker is implemented by plugins whose need for a profile depends
// on which profiles exist (e.g. a default that only matters when there is a
// choice). New calls CheckProfiles once with every configured profile name,
// sorted, and refuses the configuration when it returns an error.
type ProfileChecker interface {
	CheckProfiles(names []string) error
}

// Producer computes per-request data that filters and scorers read from
// state (for example prefix-match lengths per endpoint).
//
// Called once per request, before any profile runs, with the full candidate
// set; producers run in configuration order. It must not modify endpoints.
type Producer interface {
	Plugin
	Produce(ctx context.Context, state *State, req *Request, endpoints []*endpoint.Endpoint)
}

// Batcher is a Producer that places requests arriving together jointly
// (burst-prefix-cache-producer): live, its Produce waits up to Window for
// the others. A simulation that delivers a window's requests at once calls
// PlanBatch with them (in arrival order) first, so that their Produce calls
// answer without waiting.
type Batcher interface {
	Producer
	Window() time.Duration
	PlanBatch(reqs []*Request, candidates []*endpoint.Endpoint)
}

// Admitter may refuse a request before scheduling (for example, shed
// sheddable traffic when the pool is saturated). A non-nil error rejects the
// request; wrap ErrRejected to have it answered with 429.
type Admitter interface {
	Plugin
	Admit(ctx context.Context, state *State, req *Request, endpoints []*endpoint.Endpoint) error
}

// SaturationDetector rates how loaded the candidate endpoints are, as of
// now: values >= 1 mean saturated. The configuration's saturationDetector
// drives legacy admission: a sheddable request (priority < 0) is refused
// with ErrRejected while the candidates are saturated; priority >= 0 is
// never shed.
type SaturationDetector interface {
	Plugin
	Saturation(endpoints []*endpoint.Endpoint, now time.Time) float64
}

// Screener narrows the candidate endpoints before anything else in
// Schedule sees them: the saturation check, admitters, producers and every
// profile (prefill and decode alike), so a rule about which endpoints can
// serve the request at all is stated once.
//
// Called once per request, in configuration order, each screener getting
// the previous one's output, possibly concurrently for different
// requests. It returns a subset of endpoints in input order; it may return
// the input slice itself when it keeps everything, and must never modify
// the input slice or the endpoints. Returning an empty slice fails the
// request with ErrNoCandidates.
type Screener interface {
	Plugin
	Screen(ctx context.Context, state *State, req *Request, endpoints []*endpoint.Endpoint) []*endpoint.Endpoint
}

// Responder may answer a request itself instead of having it routed (for
// example GET /v1/models, answered for the whole pool).
//
// Called for every request when its headers arrive, before any body is
// read, in configuration order until one answers; possibly concurrently.
// endpoints is the whole pool (not narrowed by the proxy's subset hint).
// It returns its reply and true, or false to let the request be routed
// (the usual answer: it must decline cheaply). It must not modify
// endpoints or in.
type Responder interface {
	Plugin
	Respond(ctx context.Context, in *Inbound, endpoints []*endpoint.Endpoint) (Reply, bool)
}

// FairnessSource derives a request's fairness ID (its flow in flow control,
// the fairness_id of the request metrics) from its headers when the request
// names none itself: the x-llm-d-inference-fairness-id and
// x-gateway-inference-fairness-id headers always win (llm-d's
// agent-identity, one flow per coding-agent session).
//
// Called once per request with a body, in configuration order until one
// returns a non-empty ID, after the body is parsed and before flow control
// admits the request; possibly concurrently. headers has lower-case names.
// It returns the ID, or "" to leave the choice to the next source (and in
// the end to "default-flow"). It must be cheap and must not modify headers.
type FairnessSource interface {
	Plugin
	FairnessID(ctx context.Context, headers map[string]string) string
}

// AttributeSource publishes a request attribute that other plugins read by
// key, as llm-d's request attributes: agent-identity publishes
// "agent-identity" (the agent session a request belongs to), which
// session-affinity-scorer can key its sessions on.
//
// Called once per request with a body, after the body is parsed and before
// scheduling, possibly concurrently; headers has lower-case names. Attribute
// returns the request's value, or "" when it has none. It must be cheap and
// must not modify headers. AttributeKey must not change.
type AttributeSource interface {
	Plugin
	AttributeKey() string
	Attribute(ctx context.Context, headers map[string]string) string
}

// AttributeReader is implemented by plugins that read request attributes
// (Request.Attribute): the config builder refuses a config in which no
// AttributeSource publishes a key one of them reads, rather than let the
// reader see "" on every request.
type AttributeReader interface {
	Plugin
	AttributeKeys() []string
}

// DataSource is a data-layer plugin that collects data from the pool's
// endpoints and hands it to the extractors dataLayer.sources pairs with it
// (llm-d's models-data-source and models-data-extractor).
//
// The config builder calls AddExtractor once for each paired extractor, in
// order, on a newly built source, before the EPP starts it (a source
// collects as a Runnable); a reload that changes the pairing builds a new
// source rather than adding to a running one. It returns an error when
// extractor cannot take this source's data.
type DataSource interface {
	Plugin
	AddExtractor(extractor Plugin) error
}

// IntervalSource is a data source whose collection period a
// dataLayer.sources entry may set (llm-d's interval). The config builder
// calls SetInterval on a newly built source before the EPP starts it; the
// entry's interval takes precedence over the plugin's own parameter.
type IntervalSource interface {
	Plugin
	SetInterval(d time.Duration)
}

// EndpointExtractor is a plugin that follows the pool's endpoints itself
// (topology-extractor, precise-prefix-cache-producer), which llm-d configs
// pair with endpoint-notification-source; the method only marks it.
type EndpointExtractor interface {
	Plugin
	FollowsEndpoints()
}

// PreRequest runs after a successful Schedule, just before the request is
// sent to the target. Use it to record where the request went (prefix index,
// in-flight counters) and to add request headers via Result.Headers.
type PreRequest interface {
	Plugin
	PreRequest(ctx context.Context, state *State, req *Request, result *Result)
}

// ResponseHeaders runs when the model server's response headers arrive.
type ResponseHeaders interface {
	Plugin
	ResponseHeaders(ctx context.Context, state *State, req *Request, resp *Response)
}

// ResponseChunk runs for each response body chunk, in order, on the request's
// stream goroutine. The chunk is only valid during the call.
type ResponseChunk interface {
	Plugin
	ResponseChunk(ctx context.Context, state *State, req *Request, resp *Response, chunk []byte)
}

// ResponseComplete runs exactly once for every request that PreRequest saw:
// when the response ends, fails, or the client goes away (resp.Cancelled;
// resp.Termination says which, evictions included).
// Plugins that count in-flight work release it here.
type ResponseComplete interface {
	Plugin
	ResponseComplete(ctx context.Context, state *State, req *Request, resp *Response)
}

// ResponseReporter reports on a finished response to the proxy: it runs
// once, when the response's last message (the end-of-stream body chunk, the
// trailers, or headers that end the stream) arrives and before the EPP
// answers it, with the final usage in resp. What it writes with
// resp.SetMetadata rides on that answer as ext_proc dynamic metadata, which
// the proxy can log, rate-limit or bill on. A response that never ends
// (client gone) is not reported: there is no answer left to carry it.
type ResponseReporter interface {
	Plugin
	ReportResponse(ctx context.Context, state *State, req *Request, resp *Response)
}

// Runnable is implemented by plugins that need background work (expiry
// sweeps, index purges). Start blocks until ctx is done. The EPP starts it
// after the plugin is built and stops it when the plugin is replaced.
type Runnable interface {
	Start(ctx context.Context) error
}

// Resolver is implemented by plugins that refer to other plugin instances by
// name; it is called once after every plugin of a config has been built.
type Resolver interface {
	Resolve(h *Handle) error
}

// Inheritor is implemented by plugins with state worth keeping when a
// config reload rebuilds them with other parameters (an instance whose
// parameters did not change is reused as it is). Books of requests in
// flight are the case: requests routed before the reload finish through the
// old instance's hooks, so a new instance that started from zero would
// count too little until they all end.
//
// After a build succeeds, the config builder calls Inherit once on each new
// instance that replaces one of the same name and type, with that instance,
// before either is started or stopped; prev keeps serving the requests
// routed through it, so whatever the two share must be safe for that.
type Inheritor interface {
	Plugin
	Inherit(prev Plugin)
}

// Discovery lists the pool's endpoints: the kind of plugin that
// dataLayer.discovery.pluginRef names (llm-d's file-discovery). When the
// config names one, it is the EPP's only endpoint source.
//
// Discover is called once, at startup, and runs until ctx ends; a config
// reload never calls it again, since swapping the source of a live pool is
// not supported. It publishes the complete set of endpoints (absent ones
// are removed) first before blocking and then on every change. It returns
// an error when the first set cannot be read; later failures must keep the
// last published set. publish is not safe for concurrent calls.
type Discovery interface {
	Plugin
	Discover(ctx context.Context, publish func([]endpoint.Spec)) error
}
