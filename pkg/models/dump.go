package models

import (
	"strings"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// ResponderState is what models-responder shows at /debug/plugins/state:
// which endpoints serve which model, as screening sees it. JSON fields:
//
//   - collected: endpoints whose model list has been collected;
//   - uncollected: names of the others (screening keeps them for base
//     models; GET /v1/models skips them), at most scheduler.DumpLimit;
//   - moreUncollected: uncollected endpoints left out of uncollected;
//   - models: per model id, its parent (adapters only) and the names of the
//     endpoints listing it, sorted (at most scheduler.DumpLimit, then
//     moreEndpoints); at most scheduler.DumpLimit models, by id;
//   - moreModels: models left out of models.
type ResponderState struct {
	Collected       int                   `json:"collected"`
	Uncollected     []string              `json:"uncollected"`
	MoreUncollected int                   `json:"moreUncollected"`
	Models          map[string]ModelState `json:"models"`
	MoreModels      int                   `json:"moreModels"`
}

// ModelState is one model id across the pool.
type ModelState struct {
	Parent        string   `json:"parent,omitempty"`
	Endpoints     []string `json:"endpoints"`
	MoreEndpoints int      `json:"moreEndpoints,omitempty"`
}

// DumpState implements scheduler.StateDumper; it returns a ResponderState.
func (r *Responder) DumpState() any { return dumpModels(r.pool) }

func dumpModels(pool func() []*endpoint.Endpoint) ResponderState {
	st := ResponderState{Uncollected: []string{}, Models: map[string]ModelState{}}
	if pool == nil {
		return st
	}
	eps := pool()
	byID := map[string]*ModelState{}
	for _, ep := range eps {
		ms := ep.Models()
		if ms == nil {
			st.Uncollected = append(st.Uncollected, ep.Name)
			continue
		}
		st.Collected++
		for _, m := range ms.Items {
			s := byID[m.ID]
			if s == nil {
				s = &ModelState{}
				if m.Adapter() {
					s.Parent = m.Parent
				}
				byID[m.ID] = s
			}
			s.Endpoints = append(s.Endpoints, ep.Name)
		}
	}
	st.Uncollected, st.MoreUncollected = scheduler.Top(st.Uncollected, strings.Compare)
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	ids, st.MoreModels = scheduler.Top(ids, strings.Compare)
	for _, id := range ids {
		s := byID[id]
		s.Endpoints, s.MoreEndpoints = scheduler.Top(s.Endpoints, strings.Compare)
		st.Models[id] = *s
	}
	return st
}
