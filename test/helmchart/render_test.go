package helmchart

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/releaseutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/yaml"
)

// repoRoot is the repository's root, from this file's location.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate test source file")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// chartDir is the chart under test.
func chartDir(t testing.TB) string { return filepath.Join(repoRoot(t), "charts", "openepp") }

// install is what a `helm install NAME -n NAMESPACE -f FILE… --set …` line
// gives the chart: values files (as YAML text) first, then --set
// assignments, merged as the helm CLI merges them.
type install struct {
	name, namespace string
	files           []string
	set             []string
}

// values merges the install's values exactly as the helm CLI does.
func (in install) values(t testing.TB) map[string]any {
	t.Helper()
	opts := values.Options{Values: in.set}
	for i, text := range in.files {
		f := filepath.Join(t.TempDir(), fmt.Sprintf("values-%d.yaml", i))
		if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		opts.ValueFiles = append(opts.ValueFiles, f)
	}
	vals, err := opts.MergeValues(getter.Providers{})
	if err != nil {
		t.Fatalf("values: %v", err)
	}
	return vals
}

// render renders the chart for in as `helm template` does and returns the
// objects in Helm's install order; it fails the test on any error.
func render(t testing.TB, in install) []*unstructured.Unstructured {
	t.Helper()
	objs, err := renderErr(t, in)
	if err != nil {
		t.Fatalf("render %s: %v", in.name, err)
	}
	return objs
}

// renderErr is render returning Helm's error (a failed values schema, a
// template's `fail`, unparsable output) instead of failing the test.
func renderErr(t testing.TB, in install) ([]*unstructured.Unstructured, error) {
	t.Helper()
	files, err := renderFiles(t, in)
	if err != nil {
		return nil, err
	}
	for name := range files {
		if path.Base(name) == "NOTES.txt" {
			delete(files, name)
		}
	}
	caps := capabilities(t)
	hooks, manifests, err := releaseutil.SortManifests(files, caps.APIVersions, releaseutil.InstallOrder)
	if err != nil {
		return nil, err
	}
	if len(hooks) > 0 {
		t.Errorf("the chart renders %d hooks; it should render none", len(hooks))
	}
	var objs []*unstructured.Unstructured
	for _, m := range manifests {
		// Helm writes each manifest followed by a newline (SortManifests
		// trims it), which keeps a block scalar's final line break.
		// Through JSON, so numbers are int64/float64 as in any object read
		// from the API.
		j, err := yaml.YAMLToJSON([]byte(m.Content + "\n"))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Name, err)
		}
		if string(j) == "null" || string(j) == "{}" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(j); err != nil {
			return nil, fmt.Errorf("%s: %w", m.Name, err)
		}
		objs = append(objs, u)
	}
	return objs, nil
}

// renderFiles renders every template of the chart for in, NOTES.txt
// included, by file name.
func renderFiles(t testing.TB, in install) (map[string]string, error) {
	t.Helper()
	ch, err := loader.Load(chartDir(t))
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	caps := capabilities(t)
	opts := chartutil.ReleaseOptions{Name: in.name, Namespace: in.namespace, Revision: 1, IsInstall: true}
	vals, err := chartutil.ToRenderValues(ch, in.values(t), opts, caps)
	if err != nil {
		return nil, err
	}
	if v := ch.Metadata.KubeVersion; v != "" && !chartutil.IsCompatibleRange(v, caps.KubeVersion.String()) {
		return nil, fmt.Errorf("chart requires kubeVersion %s, the cluster is %s", v, caps.KubeVersion.String())
	}
	return engine.Render(ch, vals)
}

// notes is the NOTES.txt `helm install` prints for in.
func notes(t testing.TB, in install) string {
	t.Helper()
	files, err := renderFiles(t, in)
	if err != nil {
		t.Fatalf("render %s: %v", in.name, err)
	}
	for name, text := range files {
		if path.Base(name) == "NOTES.txt" {
			return text
		}
	}
	t.Fatal("the chart has no NOTES.txt")
	return ""
}

var (
	capsOnce sync.Once
	caps     *chartutil.Capabilities
	capsErr  error
)

// capabilities are the test API server's version and API versions, as helm
// reads them from a cluster.
func capabilities(t testing.TB) *chartutil.Capabilities {
	t.Helper()
	capsOnce.Do(func() { caps, capsErr = discover() })
	if capsErr != nil {
		t.Fatalf("capabilities: %v", capsErr)
	}
	return caps
}

func discover() (*chartutil.Capabilities, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(env.Config)
	if err != nil {
		return nil, err
	}
	v, err := dc.ServerVersion()
	if err != nil {
		return nil, err
	}
	apis, err := action.GetVersionSet(dc)
	if err != nil {
		return nil, err
	}
	return &chartutil.Capabilities{
		KubeVersion: chartutil.KubeVersion{Version: v.GitVersion, Major: v.Major, Minor: strings.TrimSuffix(v.Minor, "+")},
		APIVersions: apis,
		HelmVersion: chartutil.DefaultCapabilities.HelmVersion,
	}, nil
}
