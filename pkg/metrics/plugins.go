package metrics

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/openepp/openepp/pkg/certfile"
	"github.com/openepp/openepp/pkg/scheduler"
)

// Upstream data-layer plugin types. In an EndpointPickerConfig they carry the
// scraper's settings; the EPP applies every instance implementing Applier to
// its Options before starting the scraper.
const (
	DataSourceType = "metrics-data-source"
	ExtractorType  = "core-metrics-extractor"
)

// Applier is a configured data-layer plugin that adjusts scraper Options.
type Applier interface {
	scheduler.Plugin
	ApplyTo(o *Options)
}

// DataSourceParams are metrics-data-source's parameters: upstream's, and
// llm-d's additions (port, interval, CA and client certificates).
type DataSourceParams struct {
	certfile.ClientParams
	Path     string `json:"path,omitempty" doc:"metrics page path" default:"/metrics"`
	Port     int    `json:"port,omitempty" doc:"metrics port of every endpoint, instead of each endpoint's own (llm-d)"`
	Interval string `json:"interval,omitempty" doc:"scrape interval, instead of --refresh-metrics-interval (llm-d)"`
}

func (p *DataSourceParams) validate() error {
	errs := p.Problems()
	if p.Path != "" && p.Path[0] != '/' {
		errs = append(errs, fmt.Errorf("path: must start with /, got %q", p.Path))
	}
	if p.Port < 0 || p.Port > 65535 {
		errs = append(errs, fmt.Errorf("port: must be 1-65535, got %d", p.Port))
	}
	if p.Interval != "" {
		if d, err := time.ParseDuration(p.Interval); err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("interval: must be a positive duration such as 50ms, got %q", p.Interval))
		}
	}
	return errors.Join(errs...)
}

// DataSource is the metrics-data-source plugin: where and how to fetch the
// model servers' Prometheus page.
type DataSource struct {
	name   scheduler.TypedName
	params DataSourceParams
}

var _ Applier = (*DataSource)(nil)

// DataSourceFactory builds a DataSource from config.
func DataSourceFactory(name string, raw json.RawMessage, _ *scheduler.Handle) (scheduler.Plugin, error) {
	var p DataSourceParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	return &DataSource{name: scheduler.TypedName{Type: DataSourceType, Name: name}, params: p}, nil
}

// DataSourceRegistration describes the plugin type for the registry.
func DataSourceRegistration() scheduler.Registration {
	return scheduler.Registration{Type: DataSourceType, Factory: DataSourceFactory, Params: DataSourceParams{},
		Summary: "Where to scrape model servers' Prometheus metrics (scheme, path, TLS)."}
}

// TypedName implements scheduler.Plugin.
func (d *DataSource) TypedName() scheduler.TypedName { return d.name }

// SetInterval implements scheduler.IntervalSource: the scrape interval of
// the source's dataLayer.sources entry, as the interval parameter.
func (d *DataSource) SetInterval(v time.Duration) { d.params.Interval = v.String() }

// ApplyTo implements Applier.
func (d *DataSource) ApplyTo(o *Options) {
	if d.params.Scheme != "" {
		o.Scheme = d.params.Scheme
	}
	if d.params.Path != "" {
		o.Path = d.params.Path
	}
	if d.params.InsecureSkipVerify != nil {
		o.InsecureSkipVerify = d.params.InsecureSkipVerify
	}
	if d.params.Port != 0 {
		o.Port = d.params.Port
	}
	if d.params.Interval != "" {
		o.Interval, _ = time.ParseDuration(d.params.Interval) // validated by the factory
	}
	if d.params.CACertPath != "" {
		o.CACertFile = d.params.CACertPath
	}
	if d.params.ClientCertPath != "" {
		o.ClientCertFile, o.ClientKeyFile = d.params.ClientCertPath, d.params.ClientKeyPath
	}
}

// Extractor is the core-metrics-extractor plugin: which metric names each
// engine exposes (engineConfigs) and the default engine.
type Extractor struct {
	name   scheduler.TypedName
	params ExtractorParams
}

var _ Applier = (*Extractor)(nil)

// ExtractorFactory builds an Extractor from config.
func ExtractorFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	p := ExtractorParams{}
	if len(raw) > 0 && string(raw) != "null" {
		var err error
		if p, err = DecodeExtractorParams(raw); err != nil {
			return nil, err
		}
	}
	def := p.DefaultEngine
	if def == "" {
		def = EngineVLLM
	}
	if _, err := buildEngines(p.EngineConfigs, def, p.EngineLabelKey); err != nil {
		return nil, err
	}
	return &Extractor{name: scheduler.TypedName{Type: ExtractorType, Name: name}, params: p}, nil
}

// ExtractorRegistration describes the plugin type for the registry.
func ExtractorRegistration() scheduler.Registration {
	return scheduler.Registration{Type: ExtractorType, Factory: ExtractorFactory, Params: ExtractorParams{},
		Summary: "Per-engine metric names (engineConfigs) and the default engine for unlabeled endpoints."}
}

// TypedName implements scheduler.Plugin.
func (e *Extractor) TypedName() scheduler.TypedName { return e.name }

// ApplyTo implements Applier.
func (e *Extractor) ApplyTo(o *Options) { e.params.Apply(o) }
