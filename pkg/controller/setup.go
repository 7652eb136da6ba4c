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
	"sigs.k8s.io/gateway-api-inference-extension/apix/v1alpha2"

	"github.com/openepp/openepp/pkg/endpoint"
)

// SourceName is the datastore source every Kubernetes endpoint is reported
// under.
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

// Options select what to watch: an InferencePool by name (PoolName), or,
// without a pool, the Pods matching Selector on TargetPorts.
type Options struct {
	Namespace   string
	PoolName    string
	PoolGroup   string // default DefaultPoolGroup
	Selector    labels.Selector
	TargetPorts []int
	Store       Store
	Log         logr.Logger
}

func (o *Options) validate() error {
	var errs []error
	if o.Namespace == "" {
		errs = append(errs, errors.New("namespace is required"))
	}
	if (o.PoolName == "") == (o.Selector == nil) {
		errs = append(errs, errors.New("exactly one of pool name and endpoint selector is required"))
	}
	if o.PoolName == "" && o.Selector != nil {
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

// Preflight checks o and, in pool mode, that the API server serves
// InferencePool v1. Call it before building the manager: a cache for a kind
// the server does not know fails with an obscure error.
func Preflight(cfg *rest.Config, o Options) error {
	if err := o.validate(); err != nil {
		return fmt.Errorf("kubernetes source: %w", err)
	}
	if o.PoolName == "" {
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
// everything in the pool namespace only, the InferencePool by name, and in
// selector mode only the matching Pods.
func CacheOptions(o Options) cache.Options {
	c := cache.Options{
		DefaultNamespaces: map[string]cache.Config{o.Namespace: {}},
		DefaultTransform:  cache.TransformStripManagedFields(),
		ByObject:          map[client.Object]cache.ByObject{},
	}
	if o.PoolName != "" {
		c.ByObject[&infv1.InferencePool{}] = cache.ByObject{Field: fields.OneTermEqualSelector("metadata.name", o.PoolName)}
	} else if o.Selector != nil {
		c.ByObject[&corev1.Pod{}] = cache.ByObject{Label: o.Selector}
	}
	return c
}

// Lookups are what the request path reads from the cluster. Both are
// always usable; without the CRDs they simply never match.
type Lookups struct {
	Objectives *Objectives
	Rewrites   *Rewrites
}

// Setup registers the reconcilers on mgr, which must use CacheOptions(o)
// and a scheme with AddToScheme. In pool mode it fails when the
// InferencePool CRD is missing; the objective and rewrite watches start only
// for the groups whose CRDs are installed.
func Setup(mgr manager.Manager, o Options) (*Lookups, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("kubernetes source: %w", err)
	}
	if o.PoolGroup == "" {
		o.PoolGroup = DefaultPoolGroup
	}
	m := &members{namespace: o.Namespace, reader: mgr.GetClient(), store: o.Store, log: o.Log}
	l := &Lookups{Objectives: NewObjectives(), Rewrites: NewRewrites()}
	pods := &podReconciler{m: m}
	if err := watch(mgr, "pod", &corev1.Pod{}, pods, builder.WithPredicates(podChanged)); err != nil {
		return nil, err
	}
	if o.PoolName == "" {
		spec := &poolSpec{selector: o.Selector, ports: o.TargetPorts}
		if err := mgr.Add(&selectorSync{m: m, spec: spec, cache: mgr.GetCache()}); err != nil {
			return nil, fmt.Errorf("endpoint selector sync: %w", err)
		}
		o.Log.Info("watching pods by selector; InferenceObjective and InferenceModelRewrite are not read without a pool",
			"selector", o.Selector.String(), "ports", o.TargetPorts)
		return l, nil
	}
	mapper := mgr.GetRESTMapper()
	ok, err := installed(mapper, infv1.SchemeGroupVersion.WithKind("InferencePool"))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("kubernetes source: the InferencePool CRD (%s) is not installed", infv1.SchemeGroupVersion)
	}
	if err := watch(mgr, "pool", &infv1.InferencePool{}, &poolReconciler{m: m, name: o.PoolName}); err != nil {
		return nil, err
	}
	if err := setupPolicies(mgr, poolRef{name: o.PoolName, group: o.PoolGroup}, l, o.Log); err != nil {
		return nil, err
	}
	return l, nil
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

// policyKind is one optional watch: a kind in one group.
type policyKind struct {
	gvk  schema.GroupVersionKind
	name string
	add  func(mgr manager.Manager, name string) error
}

// setupPolicies starts the InferenceObjective and InferenceModelRewrite
// watches of each group whose CRD is installed.
func setupPolicies(mgr manager.Manager, pool poolRef, l *Lookups, log logr.Logger) error {
	llmd, gie := LLMDGroupVersion, v1alpha2.SchemeGroupVersion
	kinds := []policyKind{
		{llmd.WithKind("InferenceObjective"), "objective-llmd", func(mgr manager.Manager, name string) error {
			return watchPolicy(mgr, name, objectiveApplier(l.Objectives, groupLLMD, pool, func(o *LLMDObjective) *v1alpha2.InferenceObjective { return (*v1alpha2.InferenceObjective)(o) }))
		}},
		{gie.WithKind("InferenceObjective"), "objective-gie", func(mgr manager.Manager, name string) error {
			return watchPolicy(mgr, name, objectiveApplier(l.Objectives, groupGIE, pool, func(o *v1alpha2.InferenceObjective) *v1alpha2.InferenceObjective { return o }))
		}},
		{llmd.WithKind("InferenceModelRewrite"), "rewrite-llmd", func(mgr manager.Manager, name string) error {
			return watchPolicy(mgr, name, rewriteApplier(l.Rewrites, groupLLMD, pool, func(o *LLMDModelRewrite) *v1alpha2.InferenceModelRewrite { return (*v1alpha2.InferenceModelRewrite)(o) }))
		}},
		{gie.WithKind("InferenceModelRewrite"), "rewrite-gie", func(mgr manager.Manager, name string) error {
			return watchPolicy(mgr, name, rewriteApplier(l.Rewrites, groupGIE, pool, func(o *v1alpha2.InferenceModelRewrite) *v1alpha2.InferenceModelRewrite { return o }))
		}},
	}
	for _, k := range kinds {
		ok, err := installed(mgr.GetRESTMapper(), k.gvk)
		if err != nil {
			return err
		}
		if !ok {
			log.Info("watch disabled: CRD not installed", "kind", k.gvk.Kind, "group", k.gvk.Group)
			continue
		}
		log.Info("watching", "kind", k.gvk.Kind, "group", k.gvk.Group)
		if err := k.add(mgr, k.name); err != nil {
			return err
		}
	}
	return nil
}

// watchPolicy registers the controller feeding apply with objects of T.
func watchPolicy[T any, PT interface {
	*T
	client.Object
}](mgr manager.Manager, name string, apply func(string, PT, bool)) error {
	r := &crdReconciler[PT]{reader: mgr.GetClient(), newObj: func() PT { return PT(new(T)) }, apply: apply}
	return watch(mgr, name, PT(new(T)), r)
}
