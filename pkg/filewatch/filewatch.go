// Package filewatch tells when a file changes, the way a file mounted from
// a ConfigMap or rewritten by an editor changes: it watches the file's
// directory, not the file (a ConfigMap update swaps a "..data" symlink and
// editors replace the file by renaming, both of which a watch on the file
// itself would miss), and waits for a quiet period so that a burst of
// events (write, chmod, rename) is one change.
package filewatch

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watcher watches one file.
type Watcher struct {
	w    *fsnotify.Watcher
	path string
}

// New starts watching path's directory. Changes from now on are seen, so a
// caller loads the file after New and misses nothing. Close releases it.
func New(path string) (*Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := w.Add(dir); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch %q: %w", dir, err)
	}
	return &Watcher{w: w, path: path}, nil
}

// Close stops watching.
func (w *Watcher) Close() error { return w.w.Close() }

// Run calls changed after each quiet period of debounce that follows a
// change to the file, and onError with the watcher's errors, until ctx
// ends.
func (w *Watcher) Run(ctx context.Context, debounce time.Duration, changed func(), onError func(error)) error {
	timer := time.NewTimer(debounce)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.w.Events:
			if !ok {
				return errors.New("watch " + w.path + ": event channel closed")
			}
			if w.relevant(ev) {
				timer.Reset(debounce)
			}
		case err, ok := <-w.w.Errors:
			if !ok {
				return errors.New("watch " + w.path + ": error channel closed")
			}
			onError(err)
		case <-timer.C:
			changed()
		}
	}
}

// relevant keeps events on the file itself and on Kubernetes' atomic-writer
// entries ("..data", "..2024_…"); permission-only changes are ignored.
func (w *Watcher) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	base := filepath.Base(ev.Name)
	return base == filepath.Base(w.path) || strings.HasPrefix(base, "..")
}
