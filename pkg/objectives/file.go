package objectives

import (
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/filewatch"
)

// File is the objectives of a file, for the request path
// (server.Objectives), reloaded when the file changes (Start); a broken
// new version keeps the last good table.
type File struct {
	*filewatch.Reloaded[*Table]
}

// NewFile loads path (an invalid file is an error: there is no last good
// table yet). reg may be nil.
func NewFile(path string, log logr.Logger, reg prometheus.Registerer) (*File, error) {
	r, err := filewatch.NewReloaded(path, filewatch.ReloadOptions[*Table]{
		What: "objectives file", Load: Load, Log: log, RejectedMetric: "openepp_objectives_file_reload_errors_total",
		Summary: func(t *Table) []any { return []any{"objectives", len(t.All)} },
	}, reg)
	if err != nil {
		return nil, err
	}
	return &File{r}, nil
}

// Priority returns the priority of the objective called name, whatever
// pool it names; ok is false when the file defines none of that name.
func (f *File) Priority(name string) (priority int, ok bool) { return f.Current().All.Priority(name) }

// Priorities lists every objective of the file, whatever its pool.
func (f *File) Priorities() map[string]int { return f.Current().All }

// Of returns the current objectives of pool (Table.Of).
func (f *File) Of(pool string) Priorities { return f.Current().Of(pool) }
