package controller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"

	"github.com/go-logr/logr"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// DefaultPeerPortName is the name of the EndpointSlice port on which EPP
// replicas serve replica sync (the Service port's name, "replica-sync" in
// manifests/components/active-active).
const DefaultPeerPortName = "replica-sync"

// PeerOptions select the Service whose EndpointSlices list the EPP
// replicas, and where the replica list goes.
type PeerOptions struct {
	Namespace string // the EPP's namespace, where the Service lives
	Service   string // its EndpointSlices are labelled kubernetes.io/service-name=Service
	PortName  string // default DefaultPeerPortName
	// OnChange receives the peers, "ip:port" sorted and without duplicates
	// (IPv6 in brackets), every time the list changes, and once after the
	// cache has synced, even when there are none (an empty, non-nil slice).
	// Calls never overlap and come in the order the changes were seen; the
	// slice is the callee's. It should return quickly: it holds up the next
	// change.
	OnChange func(peers []string)
	Log      logr.Logger
}

func (o *PeerOptions) validate() error {
	var errs []error
	if o.Namespace == "" {
		errs = append(errs, errors.New("namespace is required"))
	}
	if o.Service == "" {
		errs = append(errs, errors.New("service is required"))
	}
	if o.OnChange == nil {
		errs = append(errs, errors.New("change callback is required"))
	}
	return errors.Join(errs...)
}

func (o *PeerOptions) defaults() {
	if o.PortName == "" {
		o.PortName = DefaultPeerPortName
	}
	if o.Log.GetSink() == nil {
		o.Log = logr.Discard()
	}
}

// AddPeerCache restricts the manager's cache of EndpointSlices to those of
// o.Service in o.Namespace (a label selector on kubernetes.io/service-name),
// so that the EPP neither lists nor keeps the namespace's other slices. Call
// it on the options built by CacheOptions before creating the manager.
func AddPeerCache(c *cache.Options, o PeerOptions) {
	if c.ByObject == nil {
		c.ByObject = map[client.Object]cache.ByObject{}
	}
	c.ByObject[&discoveryv1.EndpointSlice{}] = cache.ByObject{
		Namespaces: map[string]cache.Config{o.Namespace: {}},
		Label:      labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: o.Service}),
	}
}

// SetupPeers registers on mgr the watch that finds the other EPP replicas
// of an active-active deployment: the discovery.k8s.io/v1 EndpointSlices of
// o.Service in o.Namespace, read from the manager's cache (see
// AddPeerCache; the scheme needs the client-go types, which AddToScheme
// registers). A peer is every address of an endpoint that is ready
// (conditions.ready unset or true) and not terminating, on the port named
// o.PortName, from slices of address type IPv4 or IPv6 (FQDN slices are
// ignored); a slice without that port contributes nothing. The list
// includes this replica itself when it is ready: the replica-sync layer
// recognises itself by its ID, so self is not removed here.
//
// The watch runs on every replica, with or without leader election.
func SetupPeers(mgr manager.Manager, o PeerOptions) error {
	if err := o.validate(); err != nil {
		return fmt.Errorf("replica peers: %w", err)
	}
	o.defaults()
	p := &peerSync{o: o, reader: mgr.GetClient()}
	key := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.Namespace, Name: o.Service}}
	// Every slice event maps to the one Service key, so a burst of slice
	// changes costs one recomputation.
	toService := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{key}
	})
	err := builder.ControllerManagedBy(mgr).Named("replica-peers").
		Watches(&discoveryv1.EndpointSlice{}, toService, builder.WithPredicates(p.ofService())).
		WithOptions(controller.Options{NeedLeaderElection: ptr.To(false), SkipNameValidation: ptr.To(true)}).
		Complete(p)
	if err != nil {
		return fmt.Errorf("replica peers: controller: %w", err)
	}
	if err := mgr.Add(&peerStart{p: p, cache: mgr.GetCache()}); err != nil {
		return fmt.Errorf("replica peers: initial sync: %w", err)
	}
	return nil
}

// peerSync computes the peer list from the cache and reports changes. mu
// serialises each cache read with its callback, so the callback sees lists
// in the order they were read.
type peerSync struct {
	o      PeerOptions
	reader client.Reader

	mu       sync.Mutex
	notified bool     // OnChange has been called at least once
	last     []string // what it was last called with
}

// Reconcile recomputes the list whatever the request: every request is
// for the one Service.
func (p *peerSync) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	return reconcile.Result{}, p.sync(ctx)
}

// sync lists the Service's slices and calls OnChange when the peers differ
// from the last call, or when it was never called.
func (p *peerSync) sync(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var list discoveryv1.EndpointSliceList
	err := p.reader.List(ctx, &list, client.InNamespace(p.o.Namespace),
		client.MatchingLabels{discoveryv1.LabelServiceName: p.o.Service})
	if err != nil {
		return fmt.Errorf("list endpointslices of service %q: %w", p.o.Service, err)
	}
	peers := peerAddrs(list.Items, p.o.PortName)
	if p.notified && slices.Equal(peers, p.last) {
		return nil
	}
	p.notified, p.last = true, peers
	p.o.Log.Info("replica peers changed", "service", p.o.Service, "peers", peers)
	p.o.OnChange(slices.Clone(peers))
	return nil
}

// ofService lets through only events of the Service's slices. An update
// passes when the old or the new object is one, so a slice relabelled away
// from the Service is seen leaving.
func (p *peerSync) ofService() predicate.Funcs {
	is := func(o client.Object) bool { return o.GetLabels()[discoveryv1.LabelServiceName] == p.o.Service }
	return predicate.Funcs{
		CreateFunc:  func(e event.CreateEvent) bool { return is(e.Object) },
		DeleteFunc:  func(e event.DeleteEvent) bool { return is(e.Object) },
		UpdateFunc:  func(e event.UpdateEvent) bool { return is(e.ObjectOld) || is(e.ObjectNew) },
		GenericFunc: func(e event.GenericEvent) bool { return is(e.Object) },
	}
}

// peerAddrs returns the sorted, de-duplicated "ip:port" of every ready, not
// terminating endpoint address of the IPv4 and IPv6 slices, on the port
// named portName. Never nil.
func peerAddrs(items []discoveryv1.EndpointSlice, portName string) []string {
	peers := []string{}
	for i := range items {
		s := &items[i]
		if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		port, ok := namedPort(s.Ports, portName)
		if !ok {
			continue
		}
		for _, ep := range s.Endpoints {
			if !endpointReady(ep.Conditions) {
				continue
			}
			for _, a := range ep.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil {
					peers = append(peers, net.JoinHostPort(ip.String(), port))
				}
			}
		}
	}
	slices.Sort(peers)
	return slices.Compact(peers)
}

// namedPort is the number of the slice port called name; a port without a
// number (which means "all ports") does not count.
func namedPort(ports []discoveryv1.EndpointPort, name string) (string, bool) {
	for _, p := range ports {
		if ptr.Deref(p.Name, "") == name && p.Port != nil {
			return strconv.Itoa(int(*p.Port)), true
		}
	}
	return "", false
}

// endpointReady applies the EndpointSlice API's definitions: an unset
// ready condition means ready, an unset terminating condition means not
// terminating.
func endpointReady(c discoveryv1.EndpointConditions) bool {
	return ptr.Deref(c.Ready, true) && !ptr.Deref(c.Terminating, false)
}

// peerStart makes the first call once the cache has synced, so that the
// callback hears of an empty list too (no slice, no event).
type peerStart struct {
	p     *peerSync
	cache cache.Cache
}

// NeedLeaderElection is false: every active-active replica needs its peers.
func (s *peerStart) NeedLeaderElection() bool { return false }

// Start syncs once, retrying until it succeeds, and returns; the watch
// reports the changes after that.
func (s *peerStart) Start(ctx context.Context) error {
	syncOnce(ctx, s.cache, s.p.o.Log, "initial replica peer sync failed, retrying", s.p.sync)
	return nil
}
