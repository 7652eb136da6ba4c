package server

import (
	"net"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/openepp/openepp/pkg/endpoint"
)

// subset is the proxy's restriction of eligible endpoints (the subset hint).
// Entries match an endpoint's "ip:port", or its IP when the entry has no
// port (a pod IP then admits all of its ports); IPs compare however they
// are spelled (endpoint.CanonicalHost).
type subset struct {
	present  bool
	hostPort map[string]bool
	ipOnly   map[string]bool
}

// parseSubset reads envoy.lb.subset_hint / x-gateway-destination-endpoint-subset
// from filter metadata; the value may be a list of strings or one
// comma-separated string.
func parseSubset(md map[string]*structpb.Struct) subset {
	ns := md[SubsetNamespace]
	if ns == nil {
		return subset{}
	}
	v, ok := ns.GetFields()[SubsetKey]
	if !ok {
		return subset{}
	}
	s := subset{present: true, hostPort: map[string]bool{}, ipOnly: map[string]bool{}}
	switch k := v.GetKind().(type) {
	case *structpb.Value_ListValue:
		for _, item := range k.ListValue.GetValues() {
			s.add(item.GetStringValue())
		}
	case *structpb.Value_StringValue:
		for _, item := range strings.Split(k.StringValue, ",") {
			s.add(item)
		}
	}
	return s
}

func (s *subset) add(entry string) {
	entry = strings.TrimSpace(entry)
	if entry == "" {
		return
	}
	if host, port, err := net.SplitHostPort(entry); err == nil {
		s.hostPort[net.JoinHostPort(endpoint.CanonicalHost(host), port)] = true
		return
	}
	s.ipOnly[endpoint.CanonicalHost(strings.Trim(entry, "[]"))] = true
}

func (s *subset) empty() bool { return len(s.hostPort) == 0 && len(s.ipOnly) == 0 }

// filter returns the endpoints the hint allows, in order. Without a hint it
// returns all (the shared snapshot, not a copy).
func (s *subset) filter(all []*endpoint.Endpoint) []*endpoint.Endpoint {
	if !s.present {
		return all
	}
	out := make([]*endpoint.Endpoint, 0, len(s.hostPort)+len(s.ipOnly))
	for _, e := range all {
		if s.hostPort[e.HostPortKey] || s.ipOnly[e.IPKey] {
			out = append(out, e)
		}
	}
	return out
}
