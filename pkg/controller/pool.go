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
// selector-mode stand-in; with a picker service it starts empty. One pool
// named up front keeps the names and source of a single-pool EPP; with
// several, or a picker service, each pool reports under its own source and
// prefixes its endpoint names with "<pool>/", so that a Pod selected by two
// pools gives one endpoint per pool, each scraped and tracked on its own.
func newPools(o Options, reader client.Reader) *pools {
	p := &pools{byName: map[string]*members{}, picker: o.PickerService, onServed: o.OnServed, namespace: o.Namespace,
		reader: reader, store: o.Store, log: o.Log}
	switch {
	case o.PickerService != "": // pools join as the pool reconciler finds them
	case !o.followsPools():
		p.add(naming{}, SourceName)
	case len(o.PoolNames) == 1:
		p.add(naming{pool: o.PoolNames[0]}, SourceName)
	default:
		for _, name := range o.PoolNames {
			p.addOfSeveral(name)
		}
	}
	return p
}

// add makes the members of the pool n names; called from newPools or with
// mu held.
func (p *pools) add(n naming, source string) *members {
	log := p.log
	if n.pool != "" {
		log = log.WithValues("pool", n.pool)
	}
	m := &members{naming: n, source: source, namespace: p.namespace, reader: p.reader, store: p.store, log: log}
	p.list = append(p.list, m)
	p.byName[n.pool] = m
	return m
}

// addOfSeveral adds pool as one of several: its own source and endpoint
// names prefixed with "<pool>/".
func (p *pools) addOfSeveral(pool string) *members {
	return p.add(naming{pool: pool, prefix: pool + "/"}, SourceName+"/"+pool)
}

// poolReconciler follows the InferencePools the EPP serves. With one pool
// named up front the cache holds only that one (field selector on its
// name); otherwise it holds the namespace's pools, and those not served are
// ignored. With a picker service a pool is served while its
// endpointPickerRef names the picker: pools start and stop being served
// here.
type poolReconciler struct{ pools *pools }

func (r *poolReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	p := r.pools
	if req.Namespace != p.namespace {
		return reconcile.Result{}, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.picker == "" && p.byName[req.Name] == nil {
		return reconcile.Result{}, nil
	}
	var pool infv1.InferencePool
	err := p.reader.Get(ctx, req.NamespacedName, &pool)
	switch {
	case apierrors.IsNotFound(err) || err == nil && pool.DeletionTimestamp != nil:
		p.goneLocked(req.Name)
		return reconcile.Result{}, nil
	case err != nil:
		return reconcile.Result{}, fmt.Errorf("get pool %q: %w", req.Name, err)
	}
	m := p.servedLocked(&pool)
	if m == nil {
		return reconcile.Result{}, nil
	}
	spec, err := specFromPool(&pool)
	if err != nil {
		m.clearLocked("pool unusable")
		return reconcile.Result{}, reconcile.TerminalError(fmt.Errorf("pool %q: %w", req.Name, err))
	}
	if sameSpec(m.spec, spec) {
		return reconcile.Result{}, nil
	}
	m.log.Info("pool changed, resyncing endpoints", "selector", spec.selector.String(), "ports", spec.ports)
	if err := m.resyncLocked(ctx, spec); err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{}, nil
}

// servedLocked returns the members of pool, nil when it is not served.
// With a picker service it first starts or stops serving the pool as its
// endpointPickerRef now says.
func (p *pools) servedLocked(pool *infv1.InferencePool) *members {
	m := p.byName[pool.Name]
	if p.picker == "" {
		return m
	}
	picks := picksService(pool.Spec.EndpointPickerRef, p.picker)
	switch {
	case picks && m == nil:
		m = p.addOfSeveral(pool.Name)
		m.log.Info("pool served", "reason", "endpointPickerRef names this picker", "service", p.picker)
		p.announceLocked()
	case !picks && m != nil:
		p.dropLocked(m, "endpointPickerRef names another picker")
		return nil
	}
	return m
}

// goneLocked handles a deleted pool: a pool named up front keeps its
// (empty) place until it is back; a picker's pool stops being served.
func (p *pools) goneLocked(name string) {
	m := p.byName[name]
	switch {
	case m == nil:
	case p.picker == "":
		m.clearLocked("pool deleted")
	default:
		p.dropLocked(m, "pool deleted")
	}
}

// dropLocked stops serving a picker's pool: its endpoints and source go,
// then its members.
func (p *pools) dropLocked(m *members, why string) {
	m.spec = nil
	p.store.DeleteSource(m.source)
	p.list = slices.DeleteFunc(p.list, func(x *members) bool { return x == m })
	delete(p.byName, m.naming.pool)
	m.log.Info("pool no longer served", "reason", why)
	p.announceLocked()
}

// announceLocked tells Options.OnServed the pools now served.
func (p *pools) announceLocked() {
	if p.onServed == nil {
		return
	}
	names := make([]string, 0, len(p.byName))
	for name := range p.byName {
		names = append(names, name)
	}
	slices.Sort(names)
	p.onServed(names)
}

// picksService reports whether ref names the Service called service: kind
// Service (the default) in the core group.
func picksService(ref infv1.EndpointPickerRef, service string) bool {
	return string(ref.Name) == service && (ref.Kind == "" || ref.Kind == "Service") &&
		(ref.Group == nil || *ref.Group == "")
}

// clearLocked forgets the pool's endpoints: they go and its source is no
// longer synced; other pools keep serving. With one pool the EPP then
// reports not ready until the pool is back.
func (m *members) clearLocked(why string) {
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
