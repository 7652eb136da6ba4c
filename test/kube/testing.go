package kube

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// RunTests is a test package's TestMain body: it starts a control plane
// with opts into *env, runs each setup with it, runs the tests, stops the
// control plane, and returns the exit code for os.Exit.
func RunTests(m *testing.M, opts Options, env **Env, setup ...func(*Env) error) int {
	e, err := Start(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "control plane:", err)
		return 1
	}
	*env = e
	defer func() {
		if err := e.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop control plane:", err)
		}
	}()
	for _, s := range setup {
		if err := s(e); err != nil {
			fmt.Fprintln(os.Stderr, "test setup:", err)
			return 1
		}
	}
	return m.Run()
}

// Eventually polls cond every poll until it holds, failing t once limit
// has passed; it returns how long cond took to hold.
func Eventually(t testing.TB, limit, poll time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(poll)
	}
	return time.Since(start)
}
