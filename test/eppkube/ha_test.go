package eppkube_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/openepp/openepp/pkg/extproc"
)

// TestLeaderElection runs two replicas with leader election on one pool:
// only the leader is SERVING, both keep a warm datastore (the standby
// answers too), and when the leader stops the standby takes over.
func TestLeaderElection(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	env.Pool(t, ns, "pool", model, port)
	ip := nextIP()
	simulator(t, ip, port)
	env.RunningPod(t, ns, "a", ip, model)
	a := hostPort(ip, port)
	first := startEPP(t, ns, "--pool-name", "pool", "--ha-enable-leader-election", "--drain-timeout", "10s")
	eventually(t, "first replica leads", func() bool { return first.serving(t) })
	second := startEPP(t, ns, "--pool-name", "pool", "--ha-enable-leader-election")
	second.waitRoutable(t, a, true) // the standby's datastore is warm
	time.Sleep(500 * time.Millisecond)
	if !first.serving(t) || second.serving(t) {
		t.Fatalf("serving: first %v, second %v; want only the first", first.serving(t), second.serving(t))
	}
	for _, c := range []struct {
		in   *instance
		want string
	}{{first, "openepp_ha_leader 1"}, {second, "openepp_ha_leader 0"}} {
		if !strings.Contains(c.in.metricsPage(t), c.want+"\n") {
			t.Errorf("metrics page lacks %q", c.want)
		}
	}
	lease := &coordinationv1.Lease{}
	name := "epp-" + ns + "-pool.gateway-api-inference-extension.sigs.k8s.io"
	if err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, lease); err != nil {
		t.Fatalf("lease %s: %v", name, err)
	}
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
		t.Errorf("lease %s has no holder", name)
	}

	stopWithRequestInFlight(t, first, second, a)
	if !strings.Contains(second.metricsPage(t), "openepp_ha_leader 1\n") {
		t.Error("the new leader's page does not say it leads")
	}
}

// stopWithRequestInFlight stops the leader while one of its requests is
// in flight: it must hand the Lease over at once (the standby turns
// SERVING) and still finish the request before it exits.
func stopWithRequestInFlight(t *testing.T, leader, standby *instance, ep string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	inflight, err := leader.client.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer inflight.Close()
	if d, err := inflight.SendRequest(ctx, completionRequest(`{"model":"sim-model","prompt":"hi"}`)); err != nil || d.Immediate != nil {
		t.Fatalf("in-flight request: %v %v", err, d)
	}
	start := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- leader.stop() }()
	took := eventually(t, "the standby to take over", func() bool { return standby.serving(t) })
	t.Logf("leader told to stop -> standby SERVING after %s", took)
	if leader.serving(t) {
		t.Error("the draining leader still reports SERVING")
	}
	if got, status := standby.pick(t); got != ep {
		t.Errorf("new leader picked %q (status %d), want %s", got, status, ep)
	}
	select {
	case err := <-stopped:
		t.Fatalf("old leader exited (%v) with a request in flight", err)
	default:
	}
	resp := extproc.Response{Status: 200, Headers: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"model":"sim-model"}`)}
	if out, err := inflight.PlayResponse(ctx, resp); err != nil || string(out.Body) != string(resp.Body) {
		t.Fatalf("in-flight response through the draining leader: %v %v", out, err)
	}
	_ = inflight.Close()
	if err := <-stopped; err != nil {
		t.Fatalf("old leader: %v", err)
	}
	t.Logf("old leader exited %s after the stop, once its request finished", time.Since(start))
}
