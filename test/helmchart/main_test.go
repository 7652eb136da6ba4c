package helmchart

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/epp"
	"github.com/openepp/openepp/test/kube"
)

// env is the control plane every test of the package shares: the Inference
// Extension CRDs, Gateway API's (experimentalHttpRoute), Istio's
// DestinationRule (provider istio) and the Prometheus Operator's
// ServiceMonitor and PrometheusRule (monitoring), each from its Go module.
var env *kube.Env

func TestMain(m *testing.M) {
	os.Exit(kube.RunTests(m, kube.Options{CRDs: []kube.CRDSource{
		kube.GatewayAPI, kube.IstioDestinationRule, kube.PrometheusOperator,
	}}, &env, warmUp))
}

// warmUp starts an EPP in Kubernetes mode once before the tests: the first
// one in a process installs its logger as client-go's global klog logger,
// which would race with the API calls of tests running beside it.
func warmUp(e *kube.Env) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ready := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- epp.Run(ctx, []string{"--pool-name=warm-up", "--pool-namespace=default", "--kubeconfig=" + e.Kubeconfig,
			"--bind-address=127.0.0.1", "--grpc-port=0", "--grpc-health-port=0", "--metrics-port=0", "--drain-timeout=0s"},
			epp.WithLogger(logr.Discard()), epp.WithReadyCallback(func(epp.Addrs) { ready <- struct{}{} }))
	}()
	select {
	case <-ready:
		cancel()
		return <-done
	case err := <-done:
		return fmt.Errorf("warm-up EPP: %w", err)
	}
}

// testContext bounds the API calls of a test.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// The release every rendering test installs, with the value users of
// upstream's chart must give (the model servers' labels).
const (
	release   = "vllm-llama3-8b-instruct"
	eppName   = release + "-epp"
	modelApp  = "inferencePool.modelServers.matchLabels.app=vllm-llama3-8b-instruct"
	poolLabel = "openepp.io/pool-name"
)

// upstreamLine is the install line of GIE's getting-started guide, as set
// values: what users switch by changing only the chart reference.
var upstreamLine = []string{modelApp, "provider.name=none"}
