package dcgm

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/fetchfail"
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
	slots   chan struct{}       // polls in flight, at most maxParallelPolls
	wg      sync.WaitGroup
}

// target is one exporter's schedule and run of failures. url, next and
// members are the loop's; the rest belong to the exporter's poll while
// busy.
type target struct {
	url     string
	next    time.Time
	members map[string]struct{} // endpoint names at the last dispatch
	busy    atomic.Bool

	failures int
	reason   string
	logged   bool // this run of failures was logged
	throttle logevery.Throttle
}

func (s *Source) newPoller() *poller {
	return &poller{s: s, targets: map[string]*target{}, slots: make(chan struct{}, maxParallelPolls)}
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
		if t.busy.Load() {
			continue
		}
		if t.join(eps) {
			t.next = time.Time{} // an endpoint new to the exporter: at once
		}
		if now.Before(t.next) {
			continue
		}
		select {
		case p.slots <- struct{}{}:
		default:
			continue
		}
		t.next = now.Add(p.s.interval)
		t.busy.Store(true)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.s.poll(ctx, t, eps)
			t.busy.Store(false)
			<-p.slots
		}()
	}
	for key, t := range p.targets {
		if _, live := groups[key]; !live && !t.busy.Load() {
			delete(p.targets, key)
		}
	}
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

// fetch GETs and parses a page, bounded by the timeout and maxBytes.
func (s *Source) fetch(ctx context.Context, url string) (map[string]*dto.MetricFamily, string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fetchfail.Connect, err
	}
	req.Header.Set("Accept", acceptHeader)
	req.Header.Set("User-Agent", "openepp")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fetchfail.Classify(err, fetchfail.Connect), err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // so the connection can be reused
		return nil, fetchfail.Status, fmt.Errorf("GET %s: status %d", req.URL.Path, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, s.maxBytes+1))
	if err != nil {
		return nil, fetchfail.Classify(err, fetchfail.Read), fmt.Errorf("read DCGM page: %w", err)
	}
	if int64(len(body)) > s.maxBytes {
		return nil, fetchfail.TooLarge, fmt.Errorf("DCGM page exceeds %d bytes", s.maxBytes)
	}
	fams, err := parse(body)
	if err != nil {
		return nil, fetchfail.Parse, err
	}
	return fams, "", nil
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
