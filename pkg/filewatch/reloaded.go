package filewatch

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
)

// Reloaded is a value read from a file and read again on every change (the
// policy files: objectives, model rewrites). A version that does not load
// keeps the last good value; the problem is logged and counted.
type Reloaded[T any] struct {
	path     string
	opts     ReloadOptions[T]
	value    atomic.Pointer[T]
	rejected prometheus.Counter
	refusals atomic.Int64 // the counter's count, readable without a registry
}

// ReloadOptions describe a Reloaded file.
type ReloadOptions[T any] struct {
	// What names the file in log lines and errors ("objectives file").
	What string
	// Load reads the file at path.
	Load func(path string) (T, error)
	// Summary gives a loaded value's log key/value pairs; may be nil.
	Summary func(T) []any
	// RejectedMetric names the counter of reloads refused.
	RejectedMetric string
	Log            logr.Logger
}

// NewReloaded loads path; a file that does not load is an error (there is
// no last good value yet). The counter is registered with reg (may be nil).
func NewReloaded[T any](path string, opts ReloadOptions[T], reg prometheus.Registerer) (*Reloaded[T], error) {
	r := &Reloaded[T]{path: path, opts: opts, rejected: prometheus.NewCounter(prometheus.CounterOpts{
		Name: opts.RejectedMetric,
		Help: "Reloads of the " + opts.What + " rejected because the new version was invalid.",
	})}
	if err := r.load("loaded"); err != nil {
		return nil, err
	}
	if reg != nil {
		if err := reg.Register(r.rejected); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Rejections counts the reloads refused so far.
func (r *Reloaded[T]) Rejections() int64 { return r.refusals.Load() }

// Current is the last value that loaded.
func (r *Reloaded[T]) Current() T { return *r.value.Load() }

// Start reloads the file on every change until ctx ends. A change made
// between NewReloaded and Start is read at once.
func (r *Reloaded[T]) Start(ctx context.Context) error {
	w, err := New(r.path)
	if err != nil {
		return fmt.Errorf("%s: %w", r.opts.What, err)
	}
	defer w.Close()
	r.reload()
	return w.Run(ctx, 100*time.Millisecond, r.reload, func(err error) {
		r.opts.Log.Error(err, r.opts.What+" watch error", "path", r.path)
	})
}

func (r *Reloaded[T]) load(verb string) error {
	v, err := r.opts.Load(r.path)
	if err != nil {
		return err
	}
	r.value.Store(&v)
	kv := []any{"path", r.path}
	if r.opts.Summary != nil {
		kv = append(kv, r.opts.Summary(v)...)
	}
	r.opts.Log.Info(verb+" "+r.opts.What, kv...)
	return nil
}

func (r *Reloaded[T]) reload() {
	if err := r.load("reloaded"); err != nil {
		r.rejected.Inc()
		r.refusals.Add(1)
		r.opts.Log.Error(err, r.opts.What+" rejected; keeping the last good version", "path", r.path)
	}
}
