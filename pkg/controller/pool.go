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
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	infv1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"
)

// newPools builds the members of each pool o names, or of the one
// selector-mode stand-in. One pool keeps the names and source of a
// single-pool EPP; with several, each pool reports under its own source and
// prefixes its endpoint names with "<pool>/", so that a Pod selected by two
// pools gives one endpoint per pool, each scraped and tracked on its own.
func newPools(o Options, reader client.Reader) *pools {
	p := &pools{byName: map[string]*members{}}
	add := func(n naming, source string, log logr.Logger) {
		m := &members{naming: n, source: source, namespace: o.Namespace, reader: reader, store: o.Store, log: log}
		p.list = append(p.list, m)
		p.byName[n.pool] = m
	}
	switch {
	case len(o.PoolNames) == 0:
		add(naming{}, SourceName, o.Log)
	case len(o.PoolNames) == 1:
		add(naming{pool: o.PoolNames[0]}, SourceName, o.Log.WithValues("pool", o.PoolNames[0]))
	default:
		for _, name := range o.PoolNames {
			add(naming{pool: name, prefix: name + "/"}, SourceName+"/"+name, o.Log.WithValues("pool", name))
		}
	}
	return p
}

// poolReconciler follows the InferencePools the EPP serves. With one pool
// the cache holds only that one (field selector on its name); with several
// it holds the namespace's pools, and those not served are ignored.
type poolReconciler struct{ pools *pools }

func (r *poolReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	m := r.pools.byName[req.Name]
	if m == nil || req.Namespace != m.namespace {
		return reconcile.Result{}, nil
	}
	var pool infv1.InferencePool
	err := m.reader.Get(ctx, req.NamespacedName, &pool)
	switch {
	case apierrors.IsNotFound(err) || err == nil && pool.DeletionTimestamp != nil:
		r.clear(m, "pool deleted")
		return reconcile.Result{}, nil
	case err != nil:
		return reconcile.Result{}, fmt.Errorf("get pool %q: %w", req.Name, err)
	}
	spec, err := specFromPool(&pool)
	if err != nil {
		r.clear(m, "pool unusable")
		return reconcile.Result{}, reconcile.TerminalError(fmt.Errorf("pool %q: %w", req.Name, err))
	}
	r.pools.mu.Lock()
	defer r.pools.mu.Unlock()
	if sameSpec(m.spec, spec) {
		return reconcile.Result{}, nil
	}
	m.log.Info("pool changed, resyncing endpoints", "selector", spec.selector.String(), "ports", spec.ports)
	if err := m.resyncLocked(ctx, spec); err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{}, nil
}

// clear forgets the pool: its endpoints go and its source is no longer
// synced; other pools keep serving. With one pool the EPP then reports not
// ready until the pool is back.
func (r *poolReconciler) clear(m *members, why string) {
	r.pools.mu.Lock()
	defer r.pools.mu.Unlock()
	if m.spec == nil {
		return
	}
	m.spec = nil
	m.store.DeleteSource(m.source)
	m.log.Info("endpoints cleared", "reason", why)
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
	pools *pools
	m     *members
	spec  *poolSpec
	cache cache.Cache
}

// NeedLeaderElection is false: standbys keep a warm datastore too.
func (s *selectorSync) NeedLeaderElection() bool { return false }

// Start syncs once, retrying until it succeeds, then waits for ctx.
func (s *selectorSync) Start(ctx context.Context) error {
	if syncOnce(ctx, s.cache, s.m.log, "initial endpoint sync failed, retrying", func(ctx context.Context) error {
		s.pools.mu.Lock()
		defer s.pools.mu.Unlock()
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
