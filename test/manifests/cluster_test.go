package manifests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Where the CRDs come from: the Go modules themselves, never copied YAML.
// The Inference Extension version is whatever go.mod requires; Gateway API is
// pinned here because nothing imports its Go packages (v1.6.3 is the newest
// that builds with our Go version).
const (
	gieModule     = "sigs.k8s.io/gateway-api-inference-extension"
	gatewayModule = "sigs.k8s.io/gateway-api@v1.6.3"
)

// gatewayCRDs are the standard-channel CRDs the manifests use.
var gatewayCRDs = []string{
	"gateway.networking.k8s.io_gatewayclasses.yaml",
	"gateway.networking.k8s.io_gateways.yaml",
	"gateway.networking.k8s.io_httproutes.yaml",
}

// cluster is one real kube-apiserver + etcd shared by the tests of this
// package; TestMain stops it.
type cluster struct {
	env *envtest.Environment
	c   client.Client
}

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
	clusterOnce.Do(func() { shared, clusterErr = startCluster(repoRoot(t)) })
	if clusterErr != nil {
		t.Fatalf("start kube-apiserver: %v", clusterErr)
	}
	return shared
}

func startCluster(root string) (*cluster, error) {
	assets, err := kubeAssets(root)
	if err != nil {
		return nil, err
	}
	paths, err := crdPaths()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDInstallOptions:     envtest.CRDInstallOptions{Paths: paths, ErrorIfPathMissing: true},
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("envtest: %w", err)
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("client: %w", err), env.Stop())
	}
	return &cluster{env: env, c: c}, nil
}

// kubeAssets is KUBEBUILDER_ASSETS, or, under plain `go test`, the directory
// hack/kube-assets.sh builds (once, cached outside the clone) and prints.
func kubeAssets(root string) (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	cmd := exec.Command(filepath.Join(root, "hack", "kube-assets.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/kube-assets.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// crdPaths lists the CRD files: every CRD the Inference Extension module
// ships, and the Gateway API ones in gatewayCRDs.
func crdPaths() ([]string, error) {
	gie, err := moduleDir(gieModule)
	if err != nil {
		return nil, err
	}
	gw, err := moduleDir(gatewayModule)
	if err != nil {
		return nil, err
	}
	paths := []string{filepath.Join(gie, "config", "crd", "bases")}
	for _, f := range gatewayCRDs {
		paths = append(paths, filepath.Join(gw, "config", "crd", "standard", f))
	}
	return paths, nil
}

// moduleDir downloads (or finds in the module cache) a module and returns its
// directory. Without @version it is the version go.mod selects.
func moduleDir(mod string) (string, error) {
	var stderr bytes.Buffer
	cmd := exec.Command("go", "mod", "download", "-json", mod)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr != nil || err != nil || info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %v %s %s", mod, err, info.Error, stderr.String())
	}
	return info.Dir, nil
}

// ensureNamespace really creates ns (dry-run objects in a missing namespace
// are rejected before validation).
func (cl *cluster) ensureNamespace(ctx context.Context, ns string) error {
	err := cl.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// applyDryRun server-side applies obj with dryRun=All: the API server runs
// defaulting, schema validation (OpenAPI, CRD structural schema, CEL rules)
// and admission, then stores nothing.
func (cl *cluster) applyDryRun(ctx context.Context, obj *unstructured.Unstructured) error {
	return cl.c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj.DeepCopy()),
		client.DryRunAll, client.ForceOwnership, client.FieldOwner("openepp-manifests-test"))
}

// testContext bounds every API call of a test.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
