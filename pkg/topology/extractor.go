package topology

import (
	"encoding/json"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// ExtractorType is the type name of Extractor.
const ExtractorType = "topology-extractor"

// Well-known Kubernetes topology labels, read from the endpoint's (pod's)
// labels by default: platforms that copy node topology onto pods set them.
const (
	zoneLabel   = "topology.kubernetes.io/zone"
	regionLabel = "topology.kubernetes.io/region"
)

// ExtractorParams name the endpoint labels holding each level.
type ExtractorParams struct {
	Hostname      string `json:"hostname" doc:"endpoint (pod) label holding the endpoint's host, e.g. a slice label that groups pods sharing an NVLink domain; empty: the endpoint's Kubernetes node (an endpoints file's node), else its pod, whose ranks share a host. When set and absent on an endpoint, its host is unknown" default:""`
	HostnameLabel string `json:"hostnameLabel" doc:"llm-d's older name of hostname (hostname wins when both are set)" default:""`
	Rack          string `json:"rack" doc:"endpoint label holding the rack (or rack-scale NVLink domain); empty: racks unknown" default:""`
	Zone          string `json:"zone" doc:"endpoint label holding the zone" default:"topology.kubernetes.io/zone"`
	Region        string `json:"region" doc:"endpoint label holding the region" default:"topology.kubernetes.io/region"`
}

// Extractor is llm-d's topology-extractor: it tells where each endpoint
// runs, from its labels, node and pod (Locate). It keeps nothing: an
// endpoint's labels and node are its spec, which the datastore replaces
// when the pod changes, so each lookup reads the current one.
type Extractor struct {
	name   scheduler.TypedName
	params ExtractorParams
}

// ExtractorRegistration describes the plugin type for the registry.
func ExtractorRegistration() scheduler.Registration {
	return scheduler.Registration{
		Type:    ExtractorType,
		Factory: ExtractorFactory,
		Params:  ExtractorParams{},
		Summary: "Places each endpoint on a host (its node, or a label), rack, zone and region (labels), for the topology-affinity plugins.",
	}
}

// ExtractorFactory builds an Extractor from its parameters.
func ExtractorFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	p := ExtractorParams{Zone: zoneLabel, Region: regionLabel}
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	return NewExtractor(name, p), nil
}

// NewExtractor returns an extractor reading p's labels.
func NewExtractor(name string, p ExtractorParams) *Extractor {
	if p.Hostname == "" {
		p.Hostname = p.HostnameLabel
	}
	return &Extractor{name: scheduler.TypedName{Type: ExtractorType, Name: name}, params: p}
}

// TypedName implements scheduler.Plugin.
func (x *Extractor) TypedName() scheduler.TypedName { return x.name }

// FollowsEndpoints implements scheduler.EndpointExtractor: it reads each
// endpoint as scheduled.
func (x *Extractor) FollowsEndpoints() {}

// Locate returns where e runs.
func (x *Extractor) Locate(e *endpoint.Endpoint) Location {
	if e == nil {
		return Location{}
	}
	l := Location{Rack: label(e, x.params.Rack), Zone: label(e, x.params.Zone), Region: label(e, x.params.Region)}
	switch {
	case x.params.Hostname != "":
		l.Host = label(e, x.params.Hostname)
	case e.Node != "":
		l.Host = e.Node
	case e.Pod != "":
		// A pool's pods share one namespace, and a pod's name is no node's
		// in practice: the bare name keeps Locate free of allocations.
		l.Host = e.Pod
	}
	return l
}

func label(e *endpoint.Endpoint, key string) string {
	if key == "" {
		return ""
	}
	return e.Labels[key]
}
