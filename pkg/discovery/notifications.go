package discovery

import (
	"encoding/json"
	"fmt"

	"github.com/openepp/openepp/pkg/scheduler"
)

// NotificationSourceType is llm-d's endpoint-notification-source.
const NotificationSourceType = "endpoint-notification-source"

// NotificationSource is llm-d's endpoint-notification-source, the data
// source that tells extractors when endpoints come and go. llm-d configs
// pair it with the plugins that follow the pool (precise-prefix-cache-
// producer with discoverPods, topology-extractor); OpenEPP's follow the
// pool themselves (they read its current endpoints), so the source only
// checks that each extractor paired with it is one of those
// (scheduler.EndpointExtractor) and does nothing else.
type NotificationSource struct {
	name scheduler.TypedName
}

var _ scheduler.DataSource = (*NotificationSource)(nil)

// NotificationSourceRegistration describes the plugin type for the registry.
func NotificationSourceRegistration() scheduler.Registration {
	return scheduler.Registration{Type: NotificationSourceType, Factory: NotificationSourceFactory, Params: struct{}{},
		Summary: "Accepted for llm-d configs: the endpoint lifecycle source llm-d pairs topology-extractor and precise-prefix-cache-producer with; OpenEPP's plugins follow the pool themselves."}
}

// NotificationSourceFactory builds a NotificationSource; it takes no
// parameters.
func NotificationSourceFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	var p struct{}
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	return &NotificationSource{name: scheduler.TypedName{Type: NotificationSourceType, Name: name}}, nil
}

// TypedName implements scheduler.Plugin.
func (s *NotificationSource) TypedName() scheduler.TypedName { return s.name }

// AddExtractor implements scheduler.DataSource.
func (s *NotificationSource) AddExtractor(p scheduler.Plugin) error {
	if _, ok := p.(scheduler.EndpointExtractor); !ok {
		return fmt.Errorf("%q (type %q) does not follow endpoints, so %s cannot feed it", p.TypedName().Name, p.TypedName().Type, NotificationSourceType)
	}
	return nil
}
