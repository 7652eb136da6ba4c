package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	infv1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"
)

// poolReconciler follows the one InferencePool the EPP serves. The cache
// holds only that pool (field selector on its name), so every request is
// for it.
type poolReconciler struct {
	m    *members
	name string
}

func (r *poolReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if req.Name != r.name || req.Namespace != r.m.namespace {
		return reconcile.Result{}, nil
	}
	var pool infv1.InferencePool
	err := r.m.reader.Get(ctx, req.NamespacedName, &pool)
	switch {
	case apierrors.IsNotFound(err) || err == nil && pool.DeletionTimestamp != nil:
		r.clear("pool deleted")
		return reconcile.Result{}, nil
	case err != nil:
		return reconcile.Result{}, fmt.Errorf("get pool %q: %w", req.Name, err)
	}
	spec, err := specFromPool(&pool)
	if err != nil {
		r.clear("pool unusable")
		return reconcile.Result{}, reconcile.TerminalError(fmt.Errorf("pool %q: %w", req.Name, err))
	}
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	if sameSpec(r.m.spec, spec) {
		return reconcile.Result{}, nil
	}
	r.m.log.Info("pool changed, resyncing endpoints", "pool", req.Name, "selector", spec.selector.String(), "ports", spec.ports)
	if err := r.m.resyncLocked(ctx, spec); err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{}, nil
}

// clear forgets the pool: every endpoint goes and the source is no longer
// synced, so the EPP reports not ready until the pool is back.
func (r *poolReconciler) clear(why string) {
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	if r.m.spec == nil {
		return
	}
	r.m.spec = nil
	r.m.store.DeleteSource(SourceName)
	r.m.log.Info("endpoints cleared", "pool", r.name, "reason", why)
}

// specFromPool reads the selector and target ports; both are required by
// the CRD, but a pool written before validation existed is still refused
// with a clear error.
func specFromPool(p *infv1.InferencePool) (*poolSpec, error) {
	set := make(labels.Set, len(p.Spec.Selector.MatchLabels))
	for k, v := range p.Spec.Selector.MatchLabels {
		set[string(k)] = string(v)
	}
	var errs []error
	if len(set) == 0 {
		errs = append(errs, errors.New("spec.selector.matchLabels is empty"))
	}
	sel, err := labels.ValidatedSelectorFromSet(set)
	if err != nil {
		errs = append(errs, fmt.Errorf("spec.selector: %w", err))
	}
	ports := make([]int, len(p.Spec.TargetPorts))
	for i, tp := range p.Spec.TargetPorts {
		ports[i] = int(tp.Number)
	}
	if err := ValidateTargetPorts(ports); err != nil {
		errs = append(errs, fmt.Errorf("spec.targetPorts: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &poolSpec{selector: sel, ports: ports}, nil
}

func sameSpec(a, b *poolSpec) bool {
	return a != nil && b != nil && a.selector.String() == b.selector.String() && slices.Equal(a.ports, b.ports)
}

// selectorSync is the pool's stand-in in --endpoint-selector mode: once the
// Pod cache has synced it computes every endpoint (marking the source
// synced), then the Pod reconciler keeps them current.
type selectorSync struct {
	m     *members
	spec  *poolSpec
	cache cache.Cache
}

// NeedLeaderElection is false: standbys keep a warm datastore too.
func (s *selectorSync) NeedLeaderElection() bool { return false }

// Start syncs once, retrying until it succeeds, then waits for ctx.
func (s *selectorSync) Start(ctx context.Context) error {
	if syncOnce(ctx, s.cache, s.m.log, "initial endpoint sync failed, retrying", func(ctx context.Context) error {
		s.m.mu.Lock()
		defer s.m.mu.Unlock()
		return s.m.resyncLocked(ctx, s.spec)
	}) {
		<-ctx.Done()
	}
	return nil
}

// syncOnce waits for the cache, then runs sync until it succeeds, backing
// off from 100ms to 5s and logging msg on each failure. It reports false
// when ctx ended first.
func syncOnce(ctx context.Context, c cache.Cache, log logr.Logger, msg string, sync func(context.Context) error) bool {
	if !c.WaitForCacheSync(ctx) {
		return false // stopping before the cache synced
	}
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
		err := sync(ctx)
		if err == nil {
			return true
		}
		log.Error(err, msg, "retryIn", delay)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(delay):
		}
	}
}
