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
	*filewatch.Reloaded[map[string]int]
}

// NewFile loads path (an invalid file is an error: there is no last good
// table yet). reg may be nil.
func NewFile(path string, log logr.Logger, reg prometheus.Registerer) (*File, error) {
	r, err := filewatch.NewReloaded(path, filewatch.ReloadOptions[map[string]int]{
		What: "objectives file", Load: Load, Log: log, RejectedMetric: "openepp_objectives_file_reload_errors_total",
		Summary: func(t map[string]int) []any { return []any{"objectives", len(t)} },
	}, reg)
	if err != nil {
		return nil, err
	}
	return &File{r}, nil
}

// Priority returns the priority of the objective called name; ok is false
// when the file defines none of that name.
func (f *File) Priority(name string) (priority int, ok bool) {
	priority, ok = f.Current()[name]
	return priority, ok
}
