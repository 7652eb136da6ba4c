package server

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/openepp/openepp/pkg/scheduler"
)

// explain logs one line per decision at V(1): the targets and, for the
// primary target, each scorer's weighted contribution. The prompt is never
// logged. pool is the request's pool ("" when the endpoints have none).
func (s *Server) explain(req *scheduler.Request, res *scheduler.Result, pool string) {
	log := s.log.V(1)
	if !log.Enabled() {
		return
	}
	primary := res.Profiles[res.Primary]
	targets := res.Targets()
	kv := []any{"requestID", req.ID, "model", req.Model, "profile", res.Primary, "endpoint", joinTargets(targets)}
	if pool != "" {
		kv = append(kv, "pool", pool)
	}
	if primary != nil && len(targets) > 0 {
		kv = append(kv, "scores", contributions(primary, targets[0].HostPort))
	}
	if len(res.Profiles) > 1 { // disaggregated stages and other secondary picks
		var others []string
		for _, name := range slices.Sorted(maps.Keys(res.Profiles)) {
			if pr := res.Profiles[name]; name != res.Primary && pr != nil && len(pr.Targets) > 0 {
				others = append(others, name+"="+joinTargets(pr.Targets))
			}
		}
		kv = append(kv, "otherProfiles", strings.Join(others, " "))
	}
	log.Info("scheduled request", kv...)
}

// contributions renders "scorer=weight×score ... total=t" for one endpoint.
func contributions(pr *scheduler.ProfileResult, hostPort string) string {
	idx := -1
	for i, e := range pr.Candidates {
		if e.HostPort == hostPort {
			idx = i
			break
		}
	}
	if idx < 0 {
		return ""
	}
	var b strings.Builder
	for _, ss := range pr.PerScorer {
		if ss.Scores == nil {
			continue
		}
		b.WriteString(ss.Scorer.String())
		b.WriteByte('=')
		b.WriteString(strconv.FormatFloat(ss.Weight, 'g', 3, 64))
		b.WriteString("×")
		b.WriteString(strconv.FormatFloat(ss.Scores[idx], 'f', 3, 64))
		b.WriteByte(' ')
	}
	b.WriteString("total=")
	b.WriteString(strconv.FormatFloat(pr.Totals[idx], 'f', 3, 64))
	b.WriteString(" candidates=")
	b.WriteString(strconv.Itoa(len(pr.Candidates)))
	return b.String()
}
