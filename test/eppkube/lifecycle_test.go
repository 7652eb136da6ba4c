package eppkube_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/openepp/openepp/test/kube"
)

var model = map[string]string{"app": "model"}

// TestPodLifecycle follows pods through the real EPP: a pod that turns
// Ready is picked within a second; one that turns not Ready, is relabelled
// or is deleted is never picked again.
func TestPodLifecycle(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	env.Pool(t, ns, "pool", model, port)
	ipA, ipB, ipC := nextIP(), nextIP(), nextIP()
	for _, ip := range []string{ipA, ipB, ipC} {
		simulator(t, ip, port)
	}
	a, b, c := hostPort(ipA, port), hostPort(ipB, port), hostPort(ipC, port)
	podA := env.RunningPod(t, ns, "a", ipA, model)
	in := startEPP(t, ns, "--pool-name", "pool")
	in.waitRoutable(t, a, true)
	eventually(t, "readiness SERVING", func() bool { return in.serving(t) })

	podB := env.Pod(t, ns, "b", model, nil)
	env.SetPodStatus(t, podB, ipB, false)
	time.Sleep(300 * time.Millisecond)
	if got := in.picks(t, 20); got[b] > 0 {
		t.Fatalf("not-ready pod picked: %v", got)
	}
	start := time.Now()
	env.SetPodStatus(t, podB, ipB, true)
	in.waitRoutable(t, b, true)
	took := time.Since(start)
	t.Logf("pod Ready -> first pick (API write included): %s", took)
	if took > time.Second {
		t.Errorf("a Ready pod took %s to be picked, want < 1s", took)
	}
	if got := in.picks(t, 40); got[a] == 0 || got[b] == 0 {
		t.Errorf("picks %v: want both pods", got)
	}

	podC := env.RunningPod(t, ns, "c", ipC, model)
	in.waitRoutable(t, c, true)
	tests := []struct {
		name   string
		gone   string
		change func()
	}{
		{name: "not ready", gone: a, change: func() { env.SetPodStatus(t, podA, ipA, false) }},
		{name: "relabelled", gone: b, change: func() { env.Update(t, podB, func() { podB.Labels = map[string]string{"app": "x"} }) }},
		{name: "deleted", gone: c, change: func() { env.Delete(t, podC) }},
	}
	for _, tc := range tests { // sequential: each step removes one more pod
		start := time.Now()
		tc.change()
		in.waitRoutable(t, tc.gone, false)
		t.Logf("%s -> no longer picked after %s", tc.name, time.Since(start))
		if got := in.picks(t, 30); got[tc.gone] > 0 {
			t.Errorf("%s: %s still picked: %v", tc.name, tc.gone, got)
		}
	}
	if ep, status := in.pick(t); status != http.StatusServiceUnavailable {
		t.Errorf("empty pool: got %q %d, want 503", ep, status)
	}
	if !in.serving(t) {
		t.Error("an empty but synced pool must stay SERVING")
	}
}

// TestRanksAndActivePorts checks that each target port is an endpoint and
// that the active-ports annotation restricts them.
func TestRanksAndActivePorts(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	env.Pool(t, ns, "pool", model, port, port+1)
	ip := nextIP()
	simulator(t, ip, port)
	simulator(t, ip, port+1)
	pod := env.RunningPod(t, ns, "p", ip, model)
	in := startEPP(t, ns, "--pool-name", "pool")
	r0, r1 := hostPort(ip, port), hostPort(ip, port+1)
	in.waitRoutable(t, r0, true)
	in.waitRoutable(t, r1, true)
	env.Update(t, pod, func() { pod.Annotations = map[string]string{"inference.networking.k8s.io/active-ports": "18001"} })
	in.waitRoutable(t, r0, false)
	if got := in.picks(t, 20); got[r1] != 20 {
		t.Errorf("picks %v, want only %s", got, r1)
	}
	env.Update(t, pod, func() { pod.Annotations["llm-d.ai/active-ports"] = "18000" })
	in.waitRoutable(t, r0, true)
	in.waitRoutable(t, r1, false)
}

// TestSelectorChangeResync checks that changing the pool's selector
// replaces the endpoints at once.
func TestSelectorChangeResync(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	pool := env.Pool(t, ns, "pool", model, port)
	ipA, ipB := nextIP(), nextIP()
	simulator(t, ipA, port)
	simulator(t, ipB, port)
	env.RunningPod(t, ns, "a", ipA, model)
	env.RunningPod(t, ns, "b", ipB, map[string]string{"app": "model-v2"})
	in := startEPP(t, ns, "--pool-name", "pool")
	a, b := hostPort(ipA, port), hostPort(ipB, port)
	in.waitRoutable(t, a, true)
	if got := in.picks(t, 20); got[a] != 20 {
		t.Fatalf("picks %v, want only %s", got, a)
	}
	env.Update(t, pool, func() { kube.SetPoolSpec(pool, map[string]string{"app": "model-v2"}, port) })
	took := in.waitRoutable(t, b, true)
	in.waitRoutable(t, a, false)
	t.Logf("selector change -> new pod picked after %s", took)
	if got := in.picks(t, 20); got[b] != 20 {
		t.Errorf("picks %v, want only %s", got, b)
	}
}

// TestPoolDeletion checks that a deleted pool answers 503 and turns
// readiness NOT_SERVING, and that recreating it restores both.
func TestPoolDeletion(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	pool := env.Pool(t, ns, "pool", model, port)
	ip := nextIP()
	simulator(t, ip, port)
	env.RunningPod(t, ns, "a", ip, model)
	in := startEPP(t, ns, "--pool-name", "pool")
	a := hostPort(ip, port)
	in.waitRoutable(t, a, true)
	eventually(t, "SERVING", func() bool { return in.serving(t) })

	env.Delete(t, pool)
	eventually(t, "NOT_SERVING", func() bool { return !in.serving(t) })
	if ep, status := in.pick(t); status != http.StatusServiceUnavailable {
		t.Errorf("deleted pool: got %q %d, want 503", ep, status)
	}
	env.Pool(t, ns, "pool", model, port)
	in.waitRoutable(t, a, true)
	eventually(t, "SERVING again", func() bool { return in.serving(t) })
}

// TestEndpointSelectorMode runs without an InferencePool.
func TestEndpointSelectorMode(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	ipA, ipB := nextIP(), nextIP()
	simulator(t, ipA, port)
	simulator(t, ipB, port)
	env.RunningPod(t, ns, "a", ipA, model)
	env.RunningPod(t, ns, "b", ipB, map[string]string{"app": "model", "track": "canary"})
	in := startEPP(t, ns, "--endpoint-selector", "app=model,track notin (canary)", "--endpoint-target-ports", "18000")
	a, b := hostPort(ipA, port), hostPort(ipB, port)
	in.waitRoutable(t, a, true)
	eventually(t, "SERVING", func() bool { return in.serving(t) })
	if got := in.picks(t, 20); got[a] != 20 || got[b] != 0 {
		t.Errorf("picks %v, want only %s (the canary does not match)", got, a)
	}
}
