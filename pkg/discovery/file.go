package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/openepp/openepp/pkg/endpoint"
)

// FileEntry is one endpoint in an endpoints file.
type FileEntry struct {
	// Name defaults to "address:port".
	Name        string            `json:"name,omitempty"`
	Address     string            `json:"address"`
	Port        int               `json:"port"`
	MetricsPort int               `json:"metricsPort,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// fileDoc is the file's shape: either a bare list or {endpoints: [...]}.
type fileDoc struct {
	Endpoints []FileEntry `json:"endpoints"`
}

// LoadFile reads and validates an endpoints file, reporting every problem.
func LoadFile(path string) ([]endpoint.Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read endpoints file: %w", err)
	}
	entries, err := decodeEntries(data)
	if err != nil {
		return nil, fmt.Errorf("parse endpoints file %q: %w", path, err)
	}
	specs := make([]endpoint.Spec, 0, len(entries))
	var errs []error
	for i, e := range entries {
		spec := endpoint.Spec{Name: e.Name, Address: e.Address, Port: e.Port, MetricsPort: e.MetricsPort, Labels: e.Labels}
		if spec.Name == "" {
			spec.Name = net.JoinHostPort(e.Address, strconv.Itoa(e.Port))
		}
		if err := validate(spec); err != nil {
			errs = append(errs, fmt.Errorf("endpoints[%d] (%s): %w", i, spec.Name, err))
			continue
		}
		specs = append(specs, spec)
	}
	if err := errors.Join(append(errs, unique(specs))...); err != nil {
		return nil, fmt.Errorf("endpoints file %q: %w", path, err)
	}
	return specs, nil
}

// decodeEntries strictly decodes either a bare list or {endpoints: [...]},
// choosing by the document's shape so the error names the real problem.
func decodeEntries(data []byte) ([]FileEntry, error) {
	var shape any
	if err := yaml.Unmarshal(data, &shape); err != nil {
		return nil, err
	}
	switch shape.(type) {
	case nil:
		return nil, nil
	case []any:
		var entries []FileEntry
		return entries, yaml.UnmarshalStrict(data, &entries)
	case map[string]any:
		var doc fileDoc
		err := yaml.UnmarshalStrict(data, &doc)
		return doc.Endpoints, err
	}
	return nil, fmt.Errorf("want a list of {name, address, port, labels} or {endpoints: [...]}")
}

// File publishes the endpoints listed in a YAML file and reloads them when
// the file changes. A broken new version keeps the last good set.
type File struct {
	path   string
	store  Store
	log    logr.Logger
	errors prometheus.Counter
}

// NewFile returns a source for path. reg may be nil.
func NewFile(path string, store Store, log logr.Logger, reg prometheus.Registerer) *File {
	f := &File{path: path, store: store, log: log, errors: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "openepp_endpoints_file_reload_errors_total",
		Help: "Endpoints-file reloads rejected because the new file was invalid.",
	})}
	if reg != nil {
		reg.MustRegister(f.errors)
	}
	return f
}

// Start watches the file, loads it (failing if it is invalid: there is no
// last good set yet), then reloads it on every change until ctx ends. The
// watch comes first so that a change made while the first load runs is not
// missed.
func (f *File) Start(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch endpoints file: %w", err)
	}
	defer w.Close()
	// Watch the directory: editors and ConfigMap updates replace the file
	// by rename, which a watch on the file itself would miss.
	if err := w.Add(filepath.Dir(f.path)); err != nil {
		return fmt.Errorf("watch endpoints file directory: %w", err)
	}
	specs, err := LoadFile(f.path)
	if err != nil {
		return err
	}
	f.store.Replace(FileSource, specs)
	f.log.Info("loaded endpoints file", "path", f.path, "endpoints", len(specs))
	return f.watch(ctx, w)
}

func (f *File) watch(ctx context.Context, w *fsnotify.Watcher) error {
	// Debounce bursts of events (write + chmod + rename) into one reload.
	var pending <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-w.Events:
			if f.relevant(ev) {
				pending = time.After(100 * time.Millisecond)
			}
		case err := <-w.Errors:
			f.log.Error(err, "endpoints file watch error", "path", f.path)
		case <-pending:
			pending = nil
			f.reload()
		}
	}
}

func (f *File) relevant(ev fsnotify.Event) bool {
	// ConfigMap mounts swap a "..data" symlink; any change in the directory
	// may change what path resolves to.
	return filepath.Clean(ev.Name) == filepath.Clean(f.path) || filepath.Base(ev.Name) == "..data"
}

func (f *File) reload() {
	specs, err := LoadFile(f.path)
	if err != nil {
		f.errors.Inc()
		f.log.Error(err, "endpoints file rejected; keeping the last good set", "path", f.path)
		return
	}
	f.store.Replace(FileSource, specs)
	f.log.Info("reloaded endpoints file", "path", f.path, "endpoints", len(specs))
}
