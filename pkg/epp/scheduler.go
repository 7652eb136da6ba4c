package epp

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/pickers"
	"github.com/openepp/openepp/pkg/profiles"
	"github.com/openepp/openepp/pkg/scheduler"
)

// buildScheduler returns the scheduler new requests use. Until the config
// file support lands it is a single profile with a random picker.
func (a *app) buildScheduler(_ *settings, _ prometheus.Registerer) (*scheduler.Scheduler, error) {
	return scheduler.New(scheduler.Options{
		Handler:  profiles.NewSingle(profiles.SingleType),
		Profiles: []*scheduler.Profile{{Name: "default", Picker: pickers.NewRandom(pickers.RandomType, pickers.Params{MaxNumOfEndpoints: 1})}},
		Seed:     a.flags.Seed,
	})
}
