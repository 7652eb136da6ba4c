package dcgm

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/fetchfail"
	"github.com/openepp/openepp/pkg/httppoll"
	"github.com/openepp/openepp/pkg/logevery"
)

// acceptHeader asks for the classic text format, as the metrics scraper
// does: it is what expfmt's text parser reads.
const acceptHeader = "text/plain;version=0.0.4;q=1,*/*;q=0.1"

// maxLoggedNames bounds the endpoint names one log line lists.
const maxLoggedNames = 10

// poller tracks when each exporter is due. Every tick it groups the pool's
// endpoints by exporter and starts the polls that are due, each on a
// goroutine of its own, so an exporter that hangs delays nobody else; an
// exporter with an endpoint new to it is due at once.
type poller struct {
	s       *Source
	targets map[string]*target  // by host:port; owned by the loop
	skipped map[string]struct{} // endpoints without a node address, by name; owned by the loop
	slots   httppoll.Slots      // polls in flight, at most maxParallelPolls
	wg      sync.WaitGroup
}

// target is one exporter's schedule and run of failures. url and members
// are the loop's; the run of failures belongs to the exporter's poll while
// busy.
type target struct {
	httppoll.Turn
	url     string
	members map[string]struct{} // endpoint names at the last dispatch

	failures int
	reason   string
	logged   bool // this run of failures was logged
	throttle logevery.Throttle
}

func (s *Source) newPoller() *poller {
	return &poller{s: s, targets: map[string]*target{}, slots: httppoll.NewSlots(maxParallelPolls)}
}

// exporter returns the host:port of ep's exporter, or "" when it has none
// (useNodeAddress and no node address).
func (s *Source) exporter(ep *endpoint.Endpoint) string {
	host := ep.Address
	if s.useNode {
		host = ep.NodeAddress
	}
	if host == "" {
		return ""
	}
	return net.JoinHostPort(endpoint.CanonicalHost(host), strconv.Itoa(s.port))
}

// group returns the pool's endpoints by exporter, and notes those that
// have none.
func (p *poller) group(eps []*endpoint.Endpoint) map[string][]*endpoint.Endpoint {
	byTarget := make(map[string][]*endpoint.Endpoint, len(eps))
	var skipped map[string]struct{}
	for _, ep := range eps {
		key := p.s.exporter(ep)
		if key == "" {
			if skipped == nil {
				skipped = map[string]struct{}{}
			}
			skipped[ep.Name] = struct{}{}
			continue
		}
		byTarget[key] = append(byTarget[key], ep)
	}
	p.noteSkipped(skipped)
	return byTarget
}

// noteSkipped counts and logs, once each, the endpoints found without a
// node address since the last dispatch, and forgets those that left.
func (p *poller) noteSkipped(now map[string]struct{}) {
	var fresh []string
	for name := range now {
		if _, known := p.skipped[name]; !known {
			fresh = append(fresh, name)
		}
	}
	p.skipped = now
	if len(fresh) == 0 {
		return
	}
	p.s.tel.skippedEndpoints(len(fresh))
	slices.Sort(fresh)
	p.s.log.Info("endpoints without a node address: their GPU utilization is not collected (useNodeAddress needs the pod's hostIP)",
		"count", len(fresh), "endpoints", fresh[:min(len(fresh), maxLoggedNames)])
}

// dispatch starts the polls due at now (while slots are free; the rest
// wait for the next tick) and forgets exporters no endpoint uses any more.
func (p *poller) dispatch(ctx context.Context, now time.Time) {
	groups := p.group(p.s.endpoints())
	for key, eps := range groups {
		t := p.targets[key]
		if t == nil {
			t = &target{url: p.s.scheme + "://" + key + p.s.path}
			p.targets[key] = t
		}
		if t.Busy() {
			continue
		}
		if t.join(eps) {
			t.DueNow() // an endpoint new to the exporter
		}
		if !p.slots.Claim(&t.Turn, now, p.s.Interval) {
			continue
		}
		p.wg.Go(func() {
			defer p.slots.Release(&t.Turn)
			p.s.poll(ctx, t, eps)
		})
	}
	httppoll.Forget(p.targets, groups)
}

// join records eps as the exporter's endpoints and reports whether one of
// them is new to it.
func (t *target) join(eps []*endpoint.Endpoint) bool {
	joined := len(eps) != len(t.members)
	for _, ep := range eps {
		if _, ok := t.members[ep.Name]; !ok {
			joined = true
		}
	}
	if !joined {
		return false
	}
	t.members = make(map[string]struct{}, len(eps))
	for _, ep := range eps {
		t.members[ep.Name] = struct{}{}
	}
	return true
}

// poll fetches one exporter's page, hands it to the extractors for each
// of eps and judges the outcome.
func (s *Source) poll(ctx context.Context, t *target, eps []*endpoint.Endpoint) {
	fams, reason, err := s.fetch(ctx, t.url)
	if ctx.Err() != nil {
		return // shutting down or replaced: not the exporter's fault
	}
	s.tel.polled(reason)
	if err == nil {
		for _, ep := range eps {
			for _, x := range s.extractors {
				x.Extract(ep, fams)
			}
		}
		if t.failures > 0 && t.logged {
			s.log.V(1).Info("DCGM exporter readable again", "exporter", t.url, "failedPolls", t.failures)
		}
		t.failures, t.reason, t.logged = 0, "", false
		return
	}
	t.failures++
	if reason != t.reason {
		t.reason = reason
		if t.throttle.Allow(s.clock.Now(), logEvery) {
			t.logged = true
			s.log.V(1).Info("cannot read DCGM exporter", "exporter", t.url, "endpoints", names(eps),
				"reason", reason, "err", err.Error())
		}
	}
	if t.failures == dropAfter {
		s.clear(eps)
		if t.logged {
			s.log.V(1).Info("GPU utilization dropped", "exporter", t.url, "failedPolls", t.failures)
		}
	}
}

// names lists the first maxLoggedNames endpoints' names, for a log line.
func names(eps []*endpoint.Endpoint) []string {
	out := make([]string, 0, min(len(eps), maxLoggedNames))
	for _, ep := range eps[:min(len(eps), maxLoggedNames)] {
		out = append(out, ep.Name)
	}
	return out
}

// fetch GETs and parses a page, bounded by the timeout and MaxPageBytes.
func (s *Source) fetch(ctx context.Context, url string) (map[string]*dto.MetricFamily, string, error) {
	body, reason, err := httppoll.Get(ctx, s.transport, httppoll.Request{URL: url, Timeout: s.Timeout, MaxBytes: MaxPageBytes,
		Name: "DCGM page", Header: header})
	if err != nil {
		return nil, reason, err
	}
	fams, err := parse(body)
	if err != nil {
		return nil, fetchfail.Parse, err
	}
	return fams, "", nil
}

// header asks for the classic text format and names the EPP.
func header(h http.Header) error {
	h.Set("Accept", acceptHeader)
	h.Set("User-Agent", "openepp")
	return nil
}

// parse reads a Prometheus text page as the metrics scraper does (expfmt's
// text parser, UTF-8 metric names).
func parse(page []byte) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(page))
	if err != nil {
		return nil, fmt.Errorf("parse DCGM page: %w", err)
	}
	return fams, nil
}
