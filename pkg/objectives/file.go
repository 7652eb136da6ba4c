package objectives

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/filewatch"
)

// File is the objectives of a file, for the request path
// (server.Objectives), reloaded when the file changes; a broken new
// version keeps the last good table.
type File struct {
	path   string
	table  atomic.Pointer[map[string]int]
	log    logr.Logger
	errors prometheus.Counter
}

// NewFile loads path (an invalid file is an error: there is no last good
// table yet). reg may be nil.
func NewFile(path string, log logr.Logger, reg prometheus.Registerer) (*File, error) {
	f := &File{path: path, log: log, errors: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "openepp_objectives_file_reload_errors_total",
		Help: "Objectives-file reloads rejected because the new file was invalid.",
	})}
	if err := f.load("loaded objectives file"); err != nil {
		return nil, err
	}
	if reg != nil {
		if err := reg.Register(f.errors); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// Priority returns the priority of the objective called name; ok is false
// when the file defines none of that name.
func (f *File) Priority(name string) (priority int, ok bool) {
	priority, ok = (*f.table.Load())[name]
	return priority, ok
}

// Start reloads the file on every change until ctx ends. A change made
// between NewFile and Start is read at once.
func (f *File) Start(ctx context.Context) error {
	w, err := filewatch.New(f.path)
	if err != nil {
		return fmt.Errorf("objectives file: %w", err)
	}
	defer w.Close()
	f.reload()
	return w.Run(ctx, 100*time.Millisecond, f.reload, func(err error) {
		f.log.Error(err, "objectives file watch error", "path", f.path)
	})
}

func (f *File) load(msg string) error {
	table, err := Load(f.path)
	if err != nil {
		return err
	}
	f.table.Store(&table)
	f.log.Info(msg, "path", f.path, "objectives", len(table))
	return nil
}

func (f *File) reload() {
	if err := f.load("reloaded objectives file"); err != nil {
		f.errors.Inc()
		f.log.Error(err, "objectives file rejected; keeping the last good table", "path", f.path)
	}
}
