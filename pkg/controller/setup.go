package controller

import (
	"errors"
	"fmt"
	"slices"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	infv1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"

	"github.com/openepp/openepp/pkg/endpoint"
)

// SourceName is the datastore source of the Kubernetes endpoints. With
// several pools each pool has its own source, SourceName+"/"+pool, so that
// one pool can be cleared without the others.
const SourceName = "kubernetes"

// DefaultPoolGroup is the InferencePool API group (only v1 is supported).
const DefaultPoolGroup = infv1.GroupName

// Store is what the reconcilers need from the datastore.
type Store interface {
	Upsert(source string, spec endpoint.Spec)
	Delete(name string)
	Replace(source string, specs []endpoint.Spec)
	DeleteSource(source string)
}

// Options select what to watch: the InferencePools of Namespace named up
// front (PoolNames); those whose spec.endpointPickerRef names the Service
// PickerService, found at run time; or, without a pool, the Pods matching
// Selector on TargetPorts. Exactly one of the three is set.
type Options struct {
	Namespace     string
	PoolNames     []string
	PickerService string
	PoolGroup     string // default DefaultPoolGroup; the same for every pool
	Selector      labels.Selector
	TargetPorts   []int
	Store         Store
	Log           logr.Logger
	// OnServed, with a picker service, is told the served pools (sorted)
	// each time a pool starts or stops being served, so that requests for
	// a served pool without endpoints wait rather than fail as unknown.
	// Calls are ordered; it must not block.
	OnServed func(pools []string)
}

// followsPools reports whether endpoints come from InferencePools (by name
// or by picker), not from a selector.
func (o *Options) followsPools() bool { return len(o.PoolNames) > 0 || o.PickerService != "" }

func (o *Options) validate() error {
	var errs []error
	if o.Namespace == "" {
		errs = append(errs, errors.New("namespace is required"))
	}
	modes := 0
	for _, set := range []bool{len(o.PoolNames) > 0, o.PickerService != "", o.Selector != nil} {
		if set {
			modes++
		}
	}
	if modes != 1 {
		errs = append(errs, errors.New("exactly one of pool names, picker service and endpoint selector is required"))
	}
	for i, name := range o.PoolNames {
		switch {
		case name == "":
			errs = append(errs, fmt.Errorf("pool names[%d]: must not be empty", i))
		case slices.Contains(o.PoolNames[:i], name):
			errs = append(errs, fmt.Errorf("pool names[%d]: %q is listed twice", i, name))
		}
	}
	if modes == 1 && o.Selector != nil {
		if err := ValidateTargetPorts(o.TargetPorts); err != nil {
			errs = append(errs, fmt.Errorf("endpoint target ports: %w", err))
		}
	}
	if o.PoolGroup != "" && o.PoolGroup != DefaultPoolGroup {
		errs = append(errs, fmt.Errorf("pool group %q is not supported (only %s/v1)", o.PoolGroup, DefaultPoolGroup))
	}
	if o.Store == nil {
		errs = append(errs, errors.New("store is required"))
	}
	return errors.Join(errs...)
}

// Preflight checks o and, when following pools (by name or by picker),
// that the API server serves InferencePool v1. Call it before building the
// manager: a cache for a kind the server does not know fails with an
// obscure error.
func Preflight(cfg *rest.Config, o Options) error {
	if err := o.validate(); err != nil {
		return fmt.Errorf("kubernetes source: %w", err)
	}
	if !o.followsPools() {
		return nil
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes source: discovery client: %w", err)
	}
	gv := infv1.SchemeGroupVersion.String()
	list, err := dc.ServerResourcesForGroupVersion(gv)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("kubernetes source: discover %s: %w", gv, err)
	}
	if list == nil || !slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Kind == "InferencePool" }) {
		return fmt.Errorf("kubernetes source: the InferencePool CRD (%s) is not installed", gv)
	}
	return nil
}

// CacheOptions restrict the manager's cache to what the reconcilers read:
// everything in the pool namespace only; one pool by name (a field
// selector), or with several pools or a picker service every pool of the
// namespace, since a field selector names only one object and a picker's
// pools are not known up front (the pool reconciler ignores the others);
// and in selector mode only the matching Pods.
func CacheOptions(o Options) cache.Options {
	c := cache.Options{
		DefaultNamespaces: map[string]cache.Config{o.Namespace: {}},
		DefaultTransform:  cache.TransformStripManagedFields(),
		ByObject:          map[client.Object]cache.ByObject{},
	}
	switch {
	case len(o.PoolNames) == 1:
		c.ByObject[&infv1.InferencePool{}] = cache.ByObject{Field: fields.OneTermEqualSelector("metadata.name", o.PoolNames[0])}
	case !o.followsPools() && o.Selector != nil:
		c.ByObject[&corev1.Pod{}] = cache.ByObject{Label: o.Selector}
	}
	return c
}

// Setup registers the reconcilers on mgr, which must use CacheOptions(o)
// and a scheme with AddToScheme. It returns the pools' Lookups (see
// PoolLookups.Of). When following pools it fails if the InferencePool CRD
// is missing; the objective and rewrite watches start only for the groups
// whose CRDs are installed. There is one controller per kind whatever the
// number of pools, each dispatching to the pools concerned.
func Setup(mgr manager.Manager, o Options) (*PoolLookups, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("kubernetes source: %w", err)
	}
	if o.PoolGroup == "" {
		o.PoolGroup = DefaultPoolGroup
	}
	p := newPools(o, mgr.GetClient())
	lookups := newPoolLookups(o)
	pods := &podReconciler{pools: p, namespace: o.Namespace, reader: mgr.GetClient()}
	if err := watch(mgr, "pod", &corev1.Pod{}, pods, builder.WithPredicates(podChanged)); err != nil {
		return nil, err
	}
	if !o.followsPools() {
		spec := &poolSpec{selector: o.Selector, ports: o.TargetPorts}
		if err := mgr.Add(&selectorSync{pools: p, m: p.list[0], spec: spec, cache: mgr.GetCache()}); err != nil {
			return nil, fmt.Errorf("endpoint selector sync: %w", err)
		}
		o.Log.Info("watching pods by selector; InferenceObjective and InferenceModelRewrite are not read without a pool",
			"selector", o.Selector.String(), "ports", o.TargetPorts)
		return lookups, nil
	}
	mapper := mgr.GetRESTMapper()
	ok, err := installed(mapper, infv1.SchemeGroupVersion.WithKind("InferencePool"))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("kubernetes source: the InferencePool CRD (%s) is not installed", infv1.SchemeGroupVersion)
	}
	if err := watch(mgr, "pool", &infv1.InferencePool{}, &poolReconciler{pools: p}); err != nil {
		return nil, err
	}
	if o.PickerService != "" {
		o.Log.Info("serving the pools whose endpointPickerRef names this picker", "service", o.PickerService)
	}
	if err := setupPolicies(mgr, lookups, o.Log); err != nil {
		return nil, err
	}
	return lookups, nil
}

// watch registers one controller that runs on every replica.
func watch(mgr manager.Manager, name string, obj client.Object, r reconcile.Reconciler, opts ...builder.ForOption) error {
	err := builder.ControllerManagedBy(mgr).Named(name).For(obj, opts...).
		WithOptions(controller.Options{NeedLeaderElection: ptr.To(false), SkipNameValidation: ptr.To(true)}).
		Complete(r)
	if err != nil {
		return fmt.Errorf("kubernetes source: %s controller: %w", name, err)
	}
	return nil
}

// installed reports whether the API server serves gvk.
func installed(mapper meta.RESTMapper, gvk schema.GroupVersionKind) (bool, error) {
	_, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("kubernetes source: discover %s: %w", gvk, err)
	}
	return true, nil
}
