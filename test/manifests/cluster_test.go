package manifests

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/openepp/openepp/test/kube"
)

// cluster is one real kube-apiserver + etcd (test/kube) shared by the tests
// of this package, with the Inference Extension CRDs from its Go module and
// the Gateway API ones; TestMain stops it.
type cluster struct{ env *kube.Env }

var (
	clusterOnce sync.Once
	shared      *cluster
	clusterErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		if err := shared.env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop envtest:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// testCluster starts the shared API server on first use.
func testCluster(t *testing.T) *cluster {
	t.Helper()
	clusterOnce.Do(func() {
		env, err := kube.Start(kube.Options{CRDs: []kube.CRDSource{kube.GatewayAPI}})
		shared, clusterErr = &cluster{env: env}, err
		if err != nil {
			shared = nil
		}
	})
	if clusterErr != nil {
		t.Fatalf("start kube-apiserver: %v", clusterErr)
	}
	return shared
}

// ensureNamespace really creates ns (dry-run objects in a missing namespace
// are rejected before validation).
func (cl *cluster) ensureNamespace(ctx context.Context, ns string) error {
	return cl.env.EnsureNamespace(ctx, ns)
}

// applyDryRun server-side applies obj with dryRun=All: the API server runs
// defaulting, schema validation (OpenAPI, CRD structural schema, CEL rules)
// and admission, then stores nothing.
func (cl *cluster) applyDryRun(ctx context.Context, obj *unstructured.Unstructured) error {
	return cl.env.DryRunApply(ctx, obj)
}

// testContext bounds every API call of a test.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
