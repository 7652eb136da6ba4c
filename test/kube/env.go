// Package kube runs a real Kubernetes control plane (kube-apiserver + etcd
// through controller-runtime's envtest) for tests, with the InferencePool,
// InferenceObjective and InferenceModelRewrite CRDs from the
// gateway-api-inference-extension module, and helpers to play the parts of
// a cluster that do not exist here: Pods never run in a bare API server, so
// a test creates the Pod and then sets its IP and Ready condition through
// the status subresource, as a kubelet would.
//
// It is test support only; no production package imports it.
package kube

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/openepp/openepp/pkg/controller"
)

const (
	gieModule = "sigs.k8s.io/gateway-api-inference-extension"
	poolCRD   = "inference.networking.k8s.io_inferencepools.yaml"
)

// Options shape the control plane.
type Options struct {
	// LLMD also installs llm-d.ai/v1alpha2 InferenceObjective and
	// InferenceModelRewrite CRDs, made from GIE's by changing the group
	// (the kinds have the same shape).
	LLMD bool
	// NoCRDs installs no CRD at all (see InstallPoolCRD).
	NoCRDs bool
	// CRDs are more CRDs to install (GatewayAPI, IstioDestinationRule, …).
	CRDs []CRDSource
}

// Env is a running control plane. Share one per test package (TestMain)
// and give each test its own namespace.
type Env struct {
	// Config is an admin client config; Client a client with every type of
	// controller.AddToScheme.
	Config *rest.Config
	Client client.Client
	Scheme *kruntime.Scheme
	// Kubeconfig is a kubeconfig file for the same admin user, for
	// --kubeconfig.
	Kubeconfig string

	env *envtest.Environment
	dir string
}

// Start builds (or reuses) the binaries and starts etcd and kube-apiserver.
func Start(opts Options) (*Env, error) {
	assets, err := Assets()
	if err != nil {
		return nil, err
	}
	crds, err := crdsFor(opts)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "openepp-kube-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	e := &Env{dir: dir, env: &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDs:                  crds,
		ErrorIfCRDPathMissing: true,
	}}
	// A fixed certificate directory keeps the serving certificate and the
	// client CA across an API server restart (see RestartAPIServer).
	e.env.ControlPlane.GetAPIServer().CertDir = filepath.Join(dir, "apiserver")
	// Open watches (a running EPP's) would otherwise hold a SIGTERMed
	// kube-apiserver for its whole stop timeout.
	e.env.ControlPlane.GetAPIServer().Configure().Set("shutdown-watch-termination-grace-period", "500ms")
	if err := os.Mkdir(e.env.ControlPlane.GetAPIServer().CertDir, 0o700); err != nil {
		return nil, errors.Join(fmt.Errorf("cert dir: %w", err), os.RemoveAll(dir))
	}
	if err := e.start(); err != nil {
		_ = e.env.Stop()
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	return e, nil
}

func (e *Env) start() error {
	cfg, err := e.env.Start()
	if err != nil {
		return fmt.Errorf("envtest: %w", err)
	}
	e.Config = cfg
	e.Scheme = kruntime.NewScheme()
	if err := controller.AddToScheme(e.Scheme); err != nil {
		return err
	}
	if e.Client, err = client.New(cfg, client.Options{Scheme: e.Scheme}); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	user, err := e.env.AddUser(envtest.User{Name: "openepp-test", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("add user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	e.Kubeconfig = filepath.Join(e.dir, "kubeconfig")
	if err := os.WriteFile(e.Kubeconfig, kc, 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// Stop stops the control plane and removes its files.
func (e *Env) Stop() error {
	return errors.Join(e.env.Stop(), os.RemoveAll(e.dir))
}

// StopAPIServer stops kube-apiserver only (etcd keeps the data); clients
// then fail to connect until StartAPIServer.
func (e *Env) StopAPIServer() error {
	if err := e.env.ControlPlane.GetAPIServer().Stop(); err != nil {
		return fmt.Errorf("stop kube-apiserver: %w", err)
	}
	return nil
}

// StartAPIServer starts kube-apiserver again on the same address with the
// same certificates, so existing clients and kubeconfigs keep working.
func (e *Env) StartAPIServer() error {
	if err := e.env.ControlPlane.GetAPIServer().Start(); err != nil {
		return fmt.Errorf("start kube-apiserver: %w", err)
	}
	return nil
}

// Assets returns the directory holding kube-apiserver and etcd:
// $KUBEBUILDER_ASSETS when set (make test), else what hack/kube-assets.sh
// builds once and caches outside the clone (plain go test).
func Assets() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(root, "hack", "kube-assets.sh"))
	cmd.Dir = root
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/kube-assets.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// repoRoot is the repository's root, found from this file's location, so
// that tests of nested modules (test/helmchart) find hack/ and the main
// module's go.mod too.
func repoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate the test/kube source file")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	if _, err := os.Stat(filepath.Join(root, "hack", "kube-assets.sh")); err != nil {
		return "", fmt.Errorf("repository root %s: %w", root, err)
	}
	return root, nil
}

// crdsFor loads the CRDs from the module's config/crd/bases, never from a
// copy, and derives the llm-d ones.
func crdsFor(opts Options) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	if opts.NoCRDs {
		return nil, nil
	}
	bases, err := crdBases()
	if err != nil {
		return nil, err
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, f := range []string{poolCRD, "inference.networking.x-k8s.io_inferenceobjectives.yaml",
		"inference.networking.x-k8s.io_inferencemodelrewrites.yaml"} {
		crd, err := readCRD(filepath.Join(bases, f))
		if err != nil {
			return nil, err
		}
		crds = append(crds, crd)
		if opts.LLMD && crd.Spec.Group != controller.DefaultPoolGroup {
			crds = append(crds, regroup(crd, controller.LLMDGroupVersion.Group))
		}
	}
	for _, src := range opts.CRDs {
		more, err := src.load()
		if err != nil {
			return nil, err
		}
		crds = append(crds, more...)
	}
	return crds, nil
}

// crdBases is the CRD folder of the inference-extension module.
func crdBases() (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", gieModule)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list %s: %w", gieModule, err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "bases"), nil
}

// InstallPoolCRD installs the InferencePool CRD into a running control
// plane (one started with NoCRDs) and waits until it is served.
func (e *Env) InstallPoolCRD() error {
	bases, err := crdBases()
	if err != nil {
		return err
	}
	crd, err := readCRD(filepath.Join(bases, poolCRD))
	if err != nil {
		return err
	}
	if _, err := envtest.InstallCRDs(e.Config, envtest.CRDInstallOptions{CRDs: []*apiextensionsv1.CustomResourceDefinition{crd}}); err != nil {
		return fmt.Errorf("install InferencePool CRD: %w", err)
	}
	return nil
}

func readCRD(path string) (*apiextensionsv1.CustomResourceDefinition, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CRD: %w", err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(data, &crd); err != nil {
		return nil, fmt.Errorf("decode CRD %s: %w", path, err)
	}
	return &crd, nil
}

// regroup returns crd served under group instead.
func regroup(crd *apiextensionsv1.CustomResourceDefinition, group string) *apiextensionsv1.CustomResourceDefinition {
	c := crd.DeepCopy()
	c.Spec.Group = group
	c.Name = c.Spec.Names.Plural + "." + group
	c.Annotations = nil
	return c
}
