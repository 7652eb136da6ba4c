package scorers

import (
	"context"
	"encoding/json"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/inflight"
	"github.com/openepp/openepp/pkg/scheduler"
)

// QueueDepthType is the type name of QueueDepth.
const QueueDepthType = "queue-scorer"

// QueueDepthParams configures QueueDepth. Upstream's queue-scorer takes no
// parameters; this one is an OpenEPP extension whose default improves on
// upstream's behaviour and whose false value restores it.
type QueueDepthParams struct {
	CountUnscrapedDispatches *bool `json:"countUnscrapedDispatches" doc:"add to each endpoint's scraped queue the requests this EPP sent it after that scrape (false: the scraped queue alone, as upstream)" default:"true"`
}

func (p *QueueDepthParams) validate() error { return nil }

// QueueDepth prefers endpoints with shorter waiting queues, spreading load
// away from servers that already have a backlog.
//
// Inputs: Metrics.WaitingQueueSize and Metrics.UpdateTime of each candidate
// and, by default, its own log of the requests it saw routed (PreRequest).
// Parameters: countUnscrapedDispatches (true).
//
// Formula, with q = WaitingQueueSize + d, where d is the number of requests
// routed to the endpoint after UpdateTime (its last scrape; d = 0 when
// countUnscrapedDispatches is false), and minQ, maxQ taken over the
// candidates: score = (maxQ − q)/(maxQ − minQ); when all are equal every
// endpoint scores 1.
//
// Why d: metrics are scraped every 50 ms or so, and a scrape cannot show the
// requests sent since. Without d every request between two scrapes sees the
// same queues, so a burst piles onto the endpoint that looked emptiest (the
// herd effect); with d each routed request makes its endpoint look busier
// at once, and the correction disappears when the next scrape shows the
// real queue. In the fleet simulation (pkg/fleet, 50 ms scrapes) this
// alone cut TTFT p90 on unshared traffic by 37–77 % below saturation at
// equal throughput, and on short shared-prefix prompts at high request
// rates (where a scrape interval holds ~100 requests) by up to 95 %.
type QueueDepth struct {
	name scheduler.TypedName
	log  *dispatchLog // nil: upstream behaviour
}

var (
	_ scheduler.Scorer     = (*QueueDepth)(nil)
	_ scheduler.PreRequest = (*QueueDepth)(nil)
)

// NewQueueDepth returns a queue scorer called name with the default
// parameters.
func NewQueueDepth(name string) *QueueDepth {
	return NewQueueDepthWith(name, QueueDepthParams{})
}

// NewQueueDepthWith returns a queue scorer called name with parameters p.
func NewQueueDepthWith(name string, p QueueDepthParams) *QueueDepth {
	s := &QueueDepth{name: scheduler.TypedName{Type: QueueDepthType, Name: name}}
	if p.CountUnscrapedDispatches == nil || *p.CountUnscrapedDispatches {
		s.log = newDispatchLog()
	}
	return s
}

// QueueDepthFactory builds a QueueDepth from config.
func QueueDepthFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	var p QueueDepthParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if p.CountUnscrapedDispatches == nil && h != nil && h.UpstreamScoring {
		off := false
		p.CountUnscrapedDispatches = &off
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	return NewQueueDepthWith(name, p), nil
}

// QueueDepthRegistration describes the plugin type for the registry.
func QueueDepthRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    QueueDepthType,
		Factory: QueueDepthFactory,
		Params:  QueueDepthParams{},
		Summary: "Prefers endpoints with shorter waiting queues: (maxQ − q)/(maxQ − minQ) over the candidates, q counting requests routed since the last scrape.",
	}
}

// TypedName implements scheduler.Plugin.
func (s *QueueDepth) TypedName() scheduler.TypedName { return s.name }

// Score implements scheduler.Scorer.
func (s *QueueDepth) Score(_ context.Context, _ *scheduler.State, _ *scheduler.Request, eps []*endpoint.Endpoint) []float64 {
	out := make([]float64, len(eps))
	for i, e := range eps {
		out[i] = float64(e.Metrics().WaitingQueueSize)
	}
	if s.log != nil {
		s.log.addUnscraped(eps, out)
	}
	inverseMinMax(out)
	return out
}

// PreRequest implements scheduler.PreRequest: it notes when the request was
// routed to its primary target and, in disaggregated serving, to the
// prefill endpoint, whose queue the prefill joins just as well.
func (s *QueueDepth) PreRequest(_ context.Context, state *scheduler.State, _ *scheduler.Request, result *scheduler.Result) {
	if s.log == nil || state == nil {
		return
	}
	e := inflight.PrimaryTarget(result)
	if e != nil {
		s.log.add(e.HostPort, state.Now)
	}
	if pf := result.PrefillTarget(); pf != nil && (e == nil || pf.HostPort != e.HostPort) {
		s.log.add(pf.HostPort, state.Now)
	}
}
