package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// FilePluginType is llm-d's file-discovery plugin type.
const FilePluginType = "file-discovery"

// DefaultNamespace is file-discovery's namespace for entries that name
// none, as in llm-d.
const DefaultNamespace = "default"

// FilePluginParams are file-discovery's parameters, named as llm-d names
// them.
type FilePluginParams struct {
	Path      string `json:"path" doc:"endpoints file, in llm-d's format or --endpoints-file's (required)"`
	WatchFile bool   `json:"watchFile,omitempty" doc:"reload the file whenever it is written or replaced; false reads it once at startup" default:"false"`
}

func (p *FilePluginParams) validate() error {
	if p.Path == "" {
		return errors.New("path: required (the endpoints file)")
	}
	return nil
}

// FilePlugin is the file-discovery plugin: the endpoints listed in a file
// (see FileEntry), read once or, with watchFile, reloaded on every change
// (entries in the new file are upserted, absent ones removed). Entries
// without a namespace get DefaultNamespace. Named by
// dataLayer.discovery.pluginRef, it is the EPP's only endpoint source; the
// plugin itself does nothing until the EPP calls Discover.
type FilePlugin struct {
	name   scheduler.TypedName
	params FilePluginParams
	log    logr.Logger
	reg    prometheus.Registerer
}

var _ scheduler.Discovery = (*FilePlugin)(nil)

// FilePluginFactory builds a FilePlugin from config. It does not read the
// file: a config build must not depend on the file's state, and the file
// is checked when discovery starts.
func FilePluginFactory(name string, raw json.RawMessage, h *scheduler.Handle) (scheduler.Plugin, error) {
	var p FilePluginParams
	if err := scheduler.DecodeParams(raw, &p); err != nil {
		return nil, err
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	f := &FilePlugin{name: scheduler.TypedName{Type: FilePluginType, Name: name}, params: p, log: logr.Discard()}
	if h != nil {
		f.log, f.reg = h.Log, h.Registerer
	}
	return f, nil
}

// FilePluginRegistration describes the plugin type for the registry.
func FilePluginRegistration() scheduler.Registration {
	return scheduler.Registration{Type: FilePluginType, Factory: FilePluginFactory, Params: FilePluginParams{},
		Summary: "Endpoints from a YAML file (llm-d's format), read once or reloaded on change; named by dataLayer.discovery.pluginRef, the only endpoint source."}
}

// TypedName implements scheduler.Plugin.
func (p *FilePlugin) TypedName() scheduler.TypedName { return p.name }

// Path is the endpoints file the plugin reads (what `epp check` loads).
func (p *FilePlugin) Path() string { return p.params.Path }

// Discover implements scheduler.Discovery.
func (p *FilePlugin) Discover(ctx context.Context, publish func([]endpoint.Spec)) error {
	f := newFile(p.params.Path, p.params.WatchFile, publish, p.log)
	f.namespace = DefaultNamespace
	if p.reg != nil && p.params.WatchFile {
		if err := p.reg.Register(f.errors); err != nil {
			return fmt.Errorf("file-discovery metrics: %w", err)
		}
	}
	return f.Start(ctx)
}
