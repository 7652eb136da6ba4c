package kube

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// CRDSource names CRDs that ship as YAML inside a Go module, so a test
// installs the project's own definitions and never a copy of them.
type CRDSource struct {
	// Module is a module path with an exact version (module@vX.Y.Z); it is
	// downloaded into the module cache on first use.
	Module string
	// Files are paths inside the module; a file may hold several documents.
	Files []string
	// Names, when set, keeps only the CRDs of these names (e.g.
	// "destinationrules.networking.istio.io") from the files.
	Names []string
}

// CRDs of other projects that manifests and charts render objects of. The
// versions are pinned here because nothing imports their Go packages.
var (
	// GatewayAPI: the standard-channel Gateway API CRDs (v1.6.3 is the newest
	// that builds with our Go version).
	GatewayAPI = CRDSource{Module: "sigs.k8s.io/gateway-api@v1.6.3", Files: []string{
		"config/crd/standard/gateway.networking.k8s.io_gatewayclasses.yaml",
		"config/crd/standard/gateway.networking.k8s.io_gateways.yaml",
		"config/crd/standard/gateway.networking.k8s.io_httproutes.yaml",
	}}
	// IstioDestinationRule: Istio's DestinationRule, from istio.io/api.
	IstioDestinationRule = CRDSource{Module: "istio.io/api@v1.32.0",
		Files: []string{"kubernetes/customresourcedefinitions.gen.yaml"},
		Names: []string{"destinationrules.networking.istio.io"}}
	// PrometheusOperator: ServiceMonitor and PrometheusRule.
	PrometheusOperator = CRDSource{Module: "github.com/prometheus-operator/prometheus-operator@v0.85.0", Files: []string{
		"example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
		"example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
	}}
)

// load reads the source's CRDs from the module cache.
func (s CRDSource) load() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	dir, err := ModuleDir(s.Module)
	if err != nil {
		return nil, err
	}
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, f := range s.Files {
		crds, err := readCRDs(filepath.Join(dir, f))
		if err != nil {
			return nil, err
		}
		for _, crd := range crds {
			if len(s.Names) == 0 || slices.Contains(s.Names, crd.Name) {
				out = append(out, crd)
			}
		}
	}
	if len(s.Names) > 0 && len(out) != len(s.Names) {
		return nil, fmt.Errorf("%s: found %d of the CRDs %v", s.Module, len(out), s.Names)
	}
	return out, nil
}

// ModuleDir downloads (or finds in the module cache) a module and returns
// its directory. Without @version it is the version the repository's go.mod
// selects.
func ModuleDir(mod string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	var stderr bytes.Buffer
	cmd := exec.Command("go", "mod", "download", "-json", mod)
	cmd.Dir = root
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr != nil || err != nil || info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %v %s %s", mod, err, info.Error, stderr.String())
	}
	return info.Dir, nil
}

// readCRDs decodes every CRD document of a YAML file (strictly, so a CRD
// this apiextensions version cannot represent fails loudly).
func readCRDs(path string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read CRD: %w", err)
	}
	defer f.Close()
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	var out []*apiextensionsv1.CustomResourceDefinition
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read CRD %s: %w", path, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(doc, &crd); err != nil {
			return nil, fmt.Errorf("decode CRD %s: %w", path, err)
		}
		if crd.Kind == "CustomResourceDefinition" {
			out = append(out, &crd)
		}
	}
}
