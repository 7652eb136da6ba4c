package server

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
)

func wrapf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
}

// candidates returns the ready endpoints the proxy allows for this request.
func (x *exchange) candidates() ([]*endpoint.Endpoint, error) {
	if !x.srv.endpoints.Ready() {
		return nil, errNotReady
	}
	all := x.srv.endpoints.Snapshot()
	if len(all) == 0 {
		return nil, errNoEndpoints
	}
	hint := subset{}
	if !x.srv.opts.DisableSubsetFilter {
		hint = parseSubset(x.filterMD)
	}
	if !hint.present {
		eps := x.inPool(all, all)
		if len(eps) == 0 {
			return nil, wrapf(errNoEndpoints, "pool %q has none", x.pool)
		}
		return eps, nil
	}
	if hint.empty() {
		return nil, errEmptySubset
	}
	eps := x.inPool(all, hint.filter(all))
	if len(eps) == 0 {
		return nil, errSubsetMismatch
	}
	return eps, nil
}

// routeBodyless answers a request without a body (GET /v1/models unless a
// responder answers it, health checks through the gateway) with a random
// allowed endpoint, without running the scheduler: there is nothing to be
// smart about.
func (x *exchange) routeBodyless() (bool, error) {
	if x.api != request.Other && x.headers[":method"] == "POST" {
		return x.reject(wrapf(errEmptyBody, "%s needs a JSON body", x.api))
	}
	if err := x.resolvePool("", true); err != nil {
		return x.reject(err)
	}
	eps, err := x.candidates()
	if err != nil {
		return x.reject(err)
	}
	st := x.srv.Scheduler().NewState()
	target := eps[st.Rand.IntN(len(eps))]
	x.phase = routed
	defer x.answeredNow()
	return false, x.send(headersAnswer(answer{targets: []*endpoint.Endpoint{target}, requestID: x.generatedID, trace: x.traceHeaders()}))
}

// route parses the complete body, schedules, and sends the routing answer
// followed by the (possibly rewritten) body. eos is false when the body was
// ended by trailers.
func (x *exchange) route(eos bool) (bool, error) {
	if len(x.body) == 0 && x.api != request.Other {
		return x.reject(wrapf(errEmptyBody, "%s needs a JSON body", x.api))
	}
	parsed, err := request.Parse(x.api, x.body)
	if err != nil {
		return x.reject(err)
	}
	if err := x.resolvePool(parsed.Model, false); err != nil {
		return x.reject(err)
	}
	sched := x.srv.Scheduler()
	st := sched.NewState()
	target := x.rewriteTarget(parsed.Model, st.Rand)
	var edit request.Edit
	if target != "" && target != parsed.Model {
		edit.Model = target
		if parsed.Model != "" { // a body without a model was not rewritten
			x.modelBack = newModelRewriter(target, parsed.Model)
		}
	}
	if err := x.schedule(parsed, target, sched, st); err != nil {
		return x.reject(err)
	}
	edit.SetPriority, edit.Priority = x.enginePriority(parsed)
	if x.srv.opts.IncludeStreamUsage && parsed.LacksStreamUsage() {
		edit.IncludeUsage, x.strip = true, &usageStripper{}
	}
	body := parsed.Edited(edit)
	a := answer{
		targets:   x.result.Targets(),
		headers:   x.result.Headers,
		removed:   x.result.RemovedHeaders,
		requestID: x.generatedID,
		trace:     x.traceHeaders(),
	}
	if len(body) != len(x.body) || x.headers["content-length"] != "" {
		a.contentLength = strconv.Itoa(len(body))
	}
	if x.srv.opts.EmitEndpointScores {
		a.scores = x.result.Profiles[x.result.Primary]
	}
	x.phase = routed
	if err := x.send(headersAnswer(a)); err != nil {
		return false, err
	}
	if err := x.sendBody(body, eos); err != nil {
		return false, err
	}
	x.answeredNow()
	return false, nil
}

// enginePriority decides the body's "priority" member for the engine of the
// targets. The gateway owns it: a client's own value is replaced, so a
// client cannot jump the engine's queue past its objective. Priority 0 is
// every engine's default, so a body without the member keeps none (and is
// not copied); an operator's own default (SGLang's --default-priority-value)
// then applies to requests without an objective. The proxy may send the
// body to any target (the fallbacks after the first), so when their engines
// would read the value differently nothing is written.
func (x *exchange) enginePriority(parsed *request.Body) (set bool, value int) {
	ep := x.srv.enginePriority()
	targets := x.result.Targets()
	if ep == nil || len(targets) == 0 {
		return false, 0
	}
	value, ok := ep.Value(targets[0], x.req.Priority)
	for _, t := range targets[1:] {
		if v, o := ep.Value(t, x.req.Priority); v != value || o != ok {
			return false, 0
		}
	}
	if !ok || (value == 0 && !parsed.HasPriority()) {
		return false, 0
	}
	return true, value
}

// schedule builds the plugin-facing request and runs the scheduler and the
// PreRequest hooks.
func (x *exchange) schedule(parsed *request.Body, rewrite string, sched *scheduler.Scheduler, st *scheduler.State) error {
	x.req = &scheduler.Request{
		ID:            x.headers[RequestIDHeader],
		Model:         parsed.Model,
		IncomingModel: parsed.Model,
		Body:          parsed,
		Headers:       x.headers,
		Objective:     firstHeader(x.headers, objectiveHeaders),
		FairnessID:    x.fairnessID(sched),
		Attributes:    sched.Attributes(x.ctx, x.headers),
		Pool:          x.pool,
	}
	if rewrite != "" {
		x.req.Model = rewrite
	}
	if x.req.FairnessID == "" {
		x.req.FairnessID = defaultFlow
	}
	if objs := x.objectives(); x.req.Objective != "" && objs != nil {
		x.req.Priority, _ = objs.Priority(x.req.Objective)
	}
	if adm := x.srv.Admission(); adm != nil {
		if err := x.admit(adm); err != nil {
			return err
		}
		// A producer waiting for other requests (a batching window) settles
		// the admission early, so flow control releases the next one.
		settle := sync.OnceFunc(x.admission.Scheduled)
		defer settle()
		// The request may have waited: schedule with the configuration
		// and clock of now.
		if latest := x.srv.Scheduler(); latest != sched {
			sched, st = latest, latest.NewState()
		} else {
			st.Now = sched.Now()
		}
		st.OnWait = settle
	}
	eps, err := x.candidates()
	if err != nil {
		return err
	}
	x.state = st
	res, err := x.traceSchedule(func(ctx context.Context) (*scheduler.Result, error) {
		return sched.Schedule(ctx, x.state, x.req, eps)
	}, len(eps))
	x.srv.opts.Metrics.scheduled(x.state.Now, x.req, res, err)
	if err != nil {
		return err
	}
	x.sched, x.result = sched, res
	x.srv.explain(x.req, res, x.pool)
	sched.PreRequest(x.ctx, x.state, x.req, res)
	x.hooked = true
	x.offerRevocation()
	x.obs = x.srv.opts.Metrics.requestStarted(x.req, len(x.body))
	return nil
}

// defaultFlow is the fairness ID of a request that names none and that no
// fairness source gives one (GIE's default).
const defaultFlow = "default-flow"

// fairnessID is the request's fairness ID before the default: its fairness
// header when it has one (an explicit choice always wins), else the first
// configured FairnessSource's answer (agent-identity), else "". It is known
// before admission, which queues the request in that flow.
func (x *exchange) fairnessID(sched *scheduler.Scheduler) string {
	if id := firstHeader(x.headers, fairnessHeaders); id != "" {
		return id
	}
	return sched.FairnessID(x.ctx, x.headers)
}

// rejectedFairness is the fairness label of a refused request: none needed
// once the request was understood (its own is used), else what its headers
// and the fairness sources say.
func (x *exchange) rejectedFairness() string {
	if x.req != nil {
		return ""
	}
	return x.fairnessID(x.srv.Scheduler())
}

// joinTargets renders the fallback list "ip:port,ip:port".
func joinTargets(eps []*endpoint.Endpoint) string {
	if len(eps) == 1 {
		return eps[0].HostPort
	}
	var b strings.Builder
	for i, e := range eps {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(e.HostPort)
	}
	return b.String()
}
