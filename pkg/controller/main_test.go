package controller_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/openepp/openepp/pkg/controller"
	"github.com/openepp/openepp/pkg/datastore"
	"github.com/openepp/openepp/test/kube"
)

// env is the control plane every test of the package shares; each test
// uses its own namespace.
var env *kube.Env

func TestMain(m *testing.M) {
	os.Exit(kube.RunTests(m, kube.Options{LLMD: true}, &env))
}

// waitFor bounds every wait of a test.
const waitFor = 10 * time.Second

// eventually polls cond until it holds or waitFor passes, returning how
// long it took.
func eventually(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	return kube.Eventually(t, waitFor, 5*time.Millisecond, what, cond)
}

// eventuallyQuiet polls cond for up to waitFor without failing, so that
// the caller can report what differs.
func eventuallyQuiet(cond func() bool) {
	deadline := time.Now().Add(waitFor)
	for !cond() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// source is one running Kubernetes endpoint source.
type source struct {
	store   *datastore.Store
	lookups *controller.PoolLookups
}

// startSource runs a manager with the reconcilers for o (Store and Log
// filled in) on the shared control plane until the test ends.
func startSource(t *testing.T, o controller.Options) *source {
	t.Helper()
	s, err := startSourceOn(t, env, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startSourceOn is startSource on control plane e; it returns Setup's error.
func startSourceOn(t *testing.T, e *kube.Env, o controller.Options) (*source, error) {
	t.Helper()
	s := &source{store: datastore.New()}
	o.Store = s.store
	if o.Log.GetSink() == nil {
		o.Log = logr.Discard()
	}
	scheme := runtime.NewScheme()
	if err := controller.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	mgr, err := manager.New(e.Config, manager.Options{
		Scheme: scheme, Cache: controller.CacheOptions(o), Logger: logr.Discard(),
		Metrics: metricsserver.Options{BindAddress: "0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.lookups, err = controller.Setup(mgr, o); err != nil {
		return nil, err
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
	return s, nil
}
