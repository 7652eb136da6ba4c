package eppkube_test

import (
	"testing"
	"time"
)

// TestAPIServerRestart stops kube-apiserver while the EPP runs: the EPP
// keeps answering from its last state and stays ready; once the API server
// is back it picks up changes again. It is not parallel: the other tests
// share this API server and wait until it is done.
func TestAPIServerRestart(t *testing.T) {
	ns := env.Namespace(t)
	env.Pool(t, ns, "pool", model, port)
	ipA, ipB := nextIP(), nextIP()
	simulator(t, ipA, port)
	simulator(t, ipB, port)
	podA := env.RunningPod(t, ns, "a", ipA, model)
	in := startEPP(t, ns, "--pool-name", "pool")
	a, b := hostPort(ipA, port), hostPort(ipB, port)
	in.waitRoutable(t, a, true)

	start := time.Now()
	if err := env.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver stopped in %s", time.Since(start))
	restarted := false
	t.Cleanup(func() {
		if !restarted { // leave the shared control plane usable
			if err := env.StartAPIServer(); err != nil {
				t.Errorf("restart after failure: %v", err)
			}
		}
	})
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if ep, status := in.pick(t); ep != a {
			t.Fatalf("API server down: picked %q (status %d), want %s", ep, status, a)
		}
		if !in.serving(t) {
			t.Fatal("API server down: readiness went NOT_SERVING")
		}
	}
	start = time.Now()
	if err := env.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	restarted = true
	t.Logf("kube-apiserver started again in %s", time.Since(start))

	start = time.Now()
	env.RunningPod(t, ns, "b", ipB, model)
	env.SetPodStatus(t, podA, ipA, false)
	// client-go's reflectors retry with exponential backoff (0.8 s doubling
	// up to 30 s), so how soon they reconnect depends on how long the API
	// server was gone; allow for the worst case on a loaded machine.
	in.waitRoutableFor(t, b, true, time.Minute)
	in.waitRoutable(t, a, false)
	t.Logf("changes after the restart reached the EPP in %s", time.Since(start))
}
