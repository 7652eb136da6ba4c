package controller_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/openepp/openepp/pkg/controller"
)

// peerCalls records every OnChange call.
type peerCalls struct {
	mu    sync.Mutex
	calls [][]string
}

func (r *peerCalls) record(peers []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, peers)
}

func (r *peerCalls) snapshot() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// waitPeers waits until the latest call reported exactly want.
func (r *peerCalls) waitPeers(t *testing.T, want ...string) time.Duration {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	var got []string
	start := time.Now()
	eventuallyQuiet(func() bool {
		calls := r.snapshot()
		if len(calls) == 0 {
			return false
		}
		got = calls[len(calls)-1]
		return cmp.Equal(want, got)
	})
	if !cmp.Equal(want, got) {
		t.Fatalf("peers after %s (-want +got):\n%s", waitFor, cmp.Diff(want, got))
	}
	return time.Since(start)
}

// checkEveryCallIsAChange: OnChange is called only when the list differs
// from the previous call.
func (r *peerCalls) checkEveryCallIsAChange(t *testing.T) {
	t.Helper()
	calls := r.snapshot()
	for i := 1; i < len(calls); i++ {
		if slices.Equal(calls[i-1], calls[i]) {
			t.Errorf("call %d repeats call %d: %v (all calls: %v)", i, i-1, calls[i], calls)
		}
	}
}

// startPeers runs a manager with SetupPeers for service in ns until the test
// ends. With restrict the EndpointSlice cache is narrowed by AddPeerCache as
// the EPP does (next to the pool's cache options); without it the cache
// holds the whole namespace, so that the watch itself must ignore other
// Services' slices.
func startPeers(t *testing.T, ns, service string, restrict bool) *peerCalls {
	t.Helper()
	o := controller.PeerOptions{Namespace: ns, Service: service}
	c := controller.CacheOptions(controller.Options{Namespace: ns, PoolNames: []string{"pool"}})
	if restrict {
		controller.AddPeerCache(&c, o)
	}
	return startPeersWith(t, o, c)
}

// startPeersWith runs a manager with cache options c and SetupPeers(o),
// recording o's calls, until the test ends.
func startPeersWith(t *testing.T, o controller.PeerOptions, c cache.Options) *peerCalls {
	t.Helper()
	rec := &peerCalls{}
	o.OnChange = rec.record
	mgr, err := manager.New(env.Config, manager.Options{
		Scheme: env.Scheme, Cache: c, Logger: logr.Discard(),
		Metrics: metricsserver.Options{BindAddress: "0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := controller.SetupPeers(mgr, o); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	return rec
}

// ep is one slice endpoint with its ready and terminating conditions (nil:
// unset).
type ep struct {
	addr               string
	ready, terminating *bool
}

// slice builds an EndpointSlice of service with ports name=number.
func slice(ns, name, service string, typ discoveryv1.AddressType, ports map[string]int32, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
			Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: typ,
	}
	for n, p := range ports {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr.To(n), Port: ptr.To(p)})
	}
	for _, e := range eps {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{e.addr},
			Conditions: discoveryv1.EndpointConditions{Ready: e.ready, Terminating: e.terminating}})
	}
	return s
}

var (
	yes, no   = ptr.To(true), ptr.To(false)
	syncPorts = map[string]int32{"replica-sync": 9004, "grpc-ext-proc": 9002}
)

// TestPeers follows the replicas of a Service through its EndpointSlices,
// created by hand (no endpointslice controller runs): ready and unset-ready
// endpoints are peers, not-ready and terminating ones are not; slices
// without the port, of another Service or of FQDN type add nothing; two
// slices merge; a deleted slice's peers leave; IPv6 is bracketed. It runs
// with the cache narrowed to the Service, as the EPP runs, and with the
// whole namespace cached.
func TestPeers(t *testing.T) {
	t.Parallel()
	for _, restrict := range []bool{true, false} {
		name := "namespace cache"
		if restrict {
			name = "service cache"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testPeers(t, restrict)
		})
	}
}

func testPeers(t *testing.T, restrict bool) {
	ns := env.Namespace(t)
	const svc = "epp-peers"
	rec := startPeers(t, ns, svc, restrict)
	d := rec.waitPeers(t) // the first call comes after the cache synced, even when empty
	t.Logf("cache synced -> first (empty) peer list: %s", d)

	a := slice(ns, "a", svc, discoveryv1.AddressTypeIPv4, syncPorts,
		ep{addr: "10.0.0.1", ready: yes},
		ep{addr: "10.0.0.2"}, // ready unset: ready
		ep{addr: "10.0.0.3", ready: no},
		ep{addr: "10.0.0.4", ready: no, terminating: yes},
		ep{addr: "10.0.0.5", ready: yes, terminating: yes},
		ep{addr: "10.0.0.6", terminating: yes},
	)
	env.Create(t, a)
	d = rec.waitPeers(t, "10.0.0.1:9004", "10.0.0.2:9004")
	t.Logf("slice created -> peers reported: %s", d)

	// A second slice of the Service merges in; an address in both counts once.
	b := slice(ns, "b", svc, discoveryv1.AddressTypeIPv4, map[string]int32{"replica-sync": 9004},
		ep{addr: "10.0.0.7", ready: yes}, ep{addr: "10.0.0.1", ready: yes})
	env.Create(t, b)
	rec.waitPeers(t, "10.0.0.1:9004", "10.0.0.2:9004", "10.0.0.7:9004")

	// None of these add a peer; the IPv6 slice after them does, so the wait
	// for the exact list shows they were ignored.
	env.Create(t, slice(ns, "other-service", "other", discoveryv1.AddressTypeIPv4, syncPorts, ep{addr: "10.0.1.1", ready: yes}))
	env.Create(t, slice(ns, "other-port", svc, discoveryv1.AddressTypeIPv4, map[string]int32{"grpc-ext-proc": 9002}, ep{addr: "10.0.1.2", ready: yes}))
	env.Create(t, slice(ns, "fqdn", svc, discoveryv1.AddressTypeFQDN, syncPorts, ep{addr: "epp.example.com", ready: yes}))
	env.Create(t, slice(ns, "v6", svc, discoveryv1.AddressTypeIPv6, syncPorts, ep{addr: "fd00::1", ready: yes}, ep{addr: "fd00::2", ready: no}))
	rec.waitPeers(t, "10.0.0.1:9004", "10.0.0.2:9004", "10.0.0.7:9004", "[fd00::1]:9004")

	// Readiness changes inside a slice.
	env.Update(t, a, func() {
		a.Endpoints[2].Conditions.Ready = yes // 10.0.0.3 becomes ready
		// 10.0.0.2 terminates, as the endpointslice controller reports it.
		a.Endpoints[1].Conditions = discoveryv1.EndpointConditions{Ready: no, Serving: yes, Terminating: yes}
	})
	rec.waitPeers(t, "10.0.0.1:9004", "10.0.0.3:9004", "10.0.0.7:9004", "[fd00::1]:9004")

	// A deleted slice takes its peers along, except those another slice has.
	env.Delete(t, b)
	rec.waitPeers(t, "10.0.0.1:9004", "10.0.0.3:9004", "[fd00::1]:9004")

	// A slice relabelled away from the Service leaves it.
	env.Update(t, a, func() { a.Labels[discoveryv1.LabelServiceName] = "other" })
	rec.waitPeers(t, "[fd00::1]:9004")
	rec.checkEveryCallIsAChange(t)
}

// TestPeersPortName: a configured port name picks that port of the slices.
func TestPeersPortName(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	o := controller.PeerOptions{Namespace: ns, Service: "epp", PortName: "grpc-ext-proc"}
	c := cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}}
	controller.AddPeerCache(&c, o)
	rec := startPeersWith(t, o, c)
	env.Create(t, slice(ns, "a", "epp", discoveryv1.AddressTypeIPv4, syncPorts, ep{addr: "10.0.0.1", ready: yes}))
	rec.waitPeers(t, "10.0.0.1:9002")
}

// TestSetupPeersValidates: missing options are reported together.
func TestSetupPeersValidates(t *testing.T) {
	t.Parallel()
	mgr, err := manager.New(env.Config, manager.Options{Scheme: env.Scheme, Logger: logr.Discard(),
		Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		t.Fatal(err)
	}
	err = controller.SetupPeers(mgr, controller.PeerOptions{})
	want := []string{"namespace is required", "service is required", "change callback is required"}
	for _, w := range want {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("SetupPeers(empty options) = %v, want an error naming %q", err, w)
		}
	}
}

// TestPreflightPeers: the admin may read EndpointSlices; a service account
// without the Role rule is refused at once, with the rule named.
func TestPreflightPeers(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	o := controller.PeerOptions{Namespace: ns, Service: "epp-peers"}
	if err := controller.PreflightPeers(env.Config, o); err != nil {
		t.Fatalf("admin: %v", err)
	}
	cfg := rest.AnonymousClientConfig(env.Config)
	cfg.BearerToken = env.ServiceAccountToken(t, ns, "epp")
	err := controller.PreflightPeers(cfg, o)
	if err == nil || !strings.Contains(err.Error(), "may not list endpointslices.discovery.k8s.io") {
		t.Errorf("service account without the rule: %v, want a refusal naming the rule", err)
	}
}
