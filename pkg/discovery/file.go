package discovery

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/filewatch"
)

// File publishes the endpoints listed in a YAML file and, when watching,
// reloads them when the file changes. A broken new version keeps the last
// good set.
type File struct {
	path      string
	watching  bool
	namespace string // given to entries that name none
	publish   func([]endpoint.Spec)
	log       logr.Logger
	errors    prometheus.Counter
}

// NewFile returns the --endpoints-file source for path: watched, entries
// without a namespace keep none. reg may be nil.
func NewFile(path string, store Store, log logr.Logger, reg prometheus.Registerer) *File {
	f := newFile(path, true, func(specs []endpoint.Spec) { store.Replace(FileSource, specs) }, log)
	if reg != nil {
		reg.MustRegister(f.errors)
	}
	return f
}

func newFile(path string, watching bool, publish func([]endpoint.Spec), log logr.Logger) *File {
	return &File{path: path, watching: watching, publish: publish, log: log,
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "openepp_endpoints_file_reload_errors_total",
			Help: "Endpoints-file reloads rejected because the new file was invalid.",
		})}
}

// Start loads the file (failing if it is invalid: there is no last good
// set yet), then, when watching, reloads it on every change until ctx
// ends. The watch comes first so that a change made while the first load
// runs is not missed.
func (f *File) Start(ctx context.Context) error {
	if !f.watching {
		if err := f.load("loaded endpoints file"); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	}
	w, err := filewatch.New(f.path)
	if err != nil {
		return fmt.Errorf("endpoints file: %w", err)
	}
	defer w.Close()
	if err := f.load("loaded endpoints file"); err != nil {
		return err
	}
	return w.Run(ctx, 100*time.Millisecond, f.reload, func(err error) {
		f.log.Error(err, "endpoints file watch error", "path", f.path)
	})
}

// load reads the file and publishes its endpoints, logging msg.
func (f *File) load(msg string) error {
	specs, err := loadFile(f.path, f.namespace)
	if err != nil {
		return err
	}
	f.publish(specs)
	f.log.Info(msg, "path", f.path, "endpoints", len(specs))
	return nil
}

func (f *File) reload() {
	if err := f.load("reloaded endpoints file"); err != nil {
		f.errors.Inc()
		f.log.Error(err, "endpoints file rejected; keeping the last good set", "path", f.path)
	}
}
