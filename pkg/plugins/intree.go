// Package plugins lists every built-in plugin type explicitly. There is no
// init-time registration: the EPP builds its registry from InTree() plus any
// out-of-tree registrations it is given.
package plugins

import (
	"github.com/openepp/openepp/pkg/burst"
	"github.com/openepp/openepp/pkg/dcgm"
	"github.com/openepp/openepp/pkg/disagg"
	"github.com/openepp/openepp/pkg/discovery"
	"github.com/openepp/openepp/pkg/eviction"
	"github.com/openepp/openepp/pkg/filters"
	"github.com/openepp/openepp/pkg/flowcontrol"
	"github.com/openepp/openepp/pkg/labelattr"
	"github.com/openepp/openepp/pkg/latency"
	"github.com/openepp/openepp/pkg/metrics"
	"github.com/openepp/openepp/pkg/mmcache"
	"github.com/openepp/openepp/pkg/models"
	"github.com/openepp/openepp/pkg/p2psource"
	"github.com/openepp/openepp/pkg/pickers"
	"github.com/openepp/openepp/pkg/precise"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/profiles"
	"github.com/openepp/openepp/pkg/requestcontrol"
	"github.com/openepp/openepp/pkg/scheduler"
	"github.com/openepp/openepp/pkg/scorers"
	"github.com/openepp/openepp/pkg/topology"
)

// Registrations returns the built-in plugin types, in documentation order.
func Registrations() []scheduler.Registration {
	return append([]scheduler.Registration{
		// Profile handlers.
		profiles.SingleRegistration(),
		profiles.HeaderRegistration(),
		disagg.HandlerRegistration(),
		disagg.LegacyRegistration(),
		disagg.HeadersRegistration(),
		disagg.PrefillHeaderRegistration(),
		// Filters.
		filters.LabelSelectorRegistration(),
		filters.HeaderBasedTestingRegistration(),
		filters.UtilizationDetectorRegistration(),
		filters.ConcurrencyDetectorRegistration(),
		filters.DecodeRegistration(),
		filters.PrefillRegistration(),
		filters.EncodeRegistration(),
		filters.UtilizationCapsRegistration(),
		filters.ActiveRequestCapRegistration(),
		scorers.SessionAffinityFilterRegistration(),
		scorers.PrefixAffinityRegistration(),
		latency.TierFilterRegistration(),
		latency.DeficitFilterRegistration(),
		filters.ByLabelSelectorRegistration(),
		filters.ByLabelRegistration(),
		filters.EndpointAttributeRegistration(),
		filters.LoRAResidencyRegistration(),
		// Scorers.
		scorers.QueueDepthRegistration(),
		scorers.KVCacheUtilizationRegistration(),
		scorers.RunningRequestsRegistration(),
		scorers.PrefixCacheRegistration(),
		scorers.LoRAAffinityRegistration(),
		scorers.LoRALoadStateRegistration(),
		scorers.LoadAwareRegistration(),
		scorers.ActiveRequestsRegistration(),
		scorers.TokenLoadRegistration(),
		scorers.PrefillBacklogRegistration(),
		scorers.EndpointAttributeRegistration(),
		scorers.MetricRegistration(),
		scorers.AttributeWeightRegistration(),
		scorers.SessionAffinityRegistration(),
		scorers.NoHitLRURegistration(),
		scorers.NoHitLRUFilterRegistration(),
		scorers.HeaderLabelRegistration(),
		scorers.ContextLengthRegistration(),
		scorers.AcceleratorCapabilityRegistration(),
		mmcache.ScorerRegistration(),
		latency.ScorerRegistration(),
		latency.MonolithRegistration(),
		// Pickers.
		pickers.MaxScoreRegistration(),
		pickers.RandomRegistration(),
		pickers.WeightedRandomRegistration(),
		// Producers.
		prefix.ProducerRegistration(),
		precise.TokenProducerRegistration(),
		precise.TokenizerRegistration(),
		precise.ProducerRegistration(),
		mmcache.ProducerRegistration(),
		p2psource.Registration(),
		burst.Registration(),
		topology.ExtractorRegistration(),
		topology.ScorerRegistration(),
		topology.FilterRegistration(),
		scorers.InFlightLoadRegistration(),
		scorers.SessionIDProducerRegistration(),
		latency.ProducerRegistration(),
		// Request control.
		requestcontrol.AgentIdentityRegistration(),
		requestcontrol.ServedVerifierRegistration(),
		requestcontrol.AttributeReporterRegistration(),
		requestcontrol.ProbabilisticAdmitterRegistration(),
		latency.AdmitterRegistration(),
		// Data layer.
		metrics.DataSourceRegistration(),
		metrics.ExtractorRegistration(),
		discovery.FilePluginRegistration(),
		discovery.NotificationSourceRegistration(),
		models.SourceRegistration(),
		models.ExtractorRegistration(),
		models.ResponderRegistration(),
		dcgm.SourceRegistration(),
		dcgm.ExtractorRegistration(),
		labelattr.ProducerRegistration(),
		// Disaggregation deciders.
		disagg.PrefixDeciderRegistration(),
		disagg.AlwaysDeciderRegistration(),
		disagg.MultimodalDeciderRegistration(),
		// Flow control.
		flowcontrol.GlobalStrictRegistration(),
		flowcontrol.RoundRobinRegistration(),
		flowcontrol.FCFSRegistration(),
		flowcontrol.EDFRegistration(),
		flowcontrol.SLODeadlineRegistration(),
		flowcontrol.StaticUsageLimitRegistration(),
		flowcontrol.ProgramAwareRegistration(),
		flowcontrol.PriorityHoldbackRegistration(),
		flowcontrol.SoftReflectiveCeilingRegistration(),
		eviction.SheddableRegistration(),
		eviction.PriorityThenTimeRegistration(),
	}, parserRegistrations()...)
}

// InTree returns a registry holding every built-in plugin type plus extra
// (out-of-tree) registrations; a duplicate type is an error.
func InTree(extra ...scheduler.Registration) (*scheduler.Registry, error) {
	reg := scheduler.NewRegistry()
	for _, r := range append(Registrations(), extra...) {
		if err := reg.Register(r); err != nil {
			return nil, err
		}
	}
	return reg, nil
}
