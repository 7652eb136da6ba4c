package helmchart

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/openepp/openepp/test/kube"
)

// upstreamValues is GIE v1.5.0's inferencepool values.yaml, from the module
// the main go.mod requires (the tag's own file, never a copy).
func upstreamValues(t *testing.T) []byte {
	t.Helper()
	dir, err := kube.ModuleDir("sigs.k8s.io/gateway-api-inference-extension")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "config", "charts", "inferencepool", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestUpstreamValuesFileRenders installs with upstream's own values.yaml as
// the user's values file (plus the required labels): every key it has is
// one this chart knows, and its values are ones this chart can honour.
func TestUpstreamValuesFileRenders(t *testing.T) {
	t.Parallel()
	objs := render(t, install{name: release, namespace: "ns", files: []string{string(upstreamValues(t))}, set: upstreamLine})
	_, c := deployment(t, objs)
	if c.Image != "registry.k8s.io/gateway-api-inference-extension/epp:v1.5.0" || c.ImagePullPolicy != "Always" {
		t.Errorf("image %s (%s): want upstream's image values applied as upstream does", c.Image, c.ImagePullPolicy)
	}
}

// TestREADMEDocumentsEveryUpstreamValue: each value of upstream's
// values.yaml (or the block holding it) has a row in the chart's README.
func TestREADMEDocumentsEveryUpstreamValue(t *testing.T) {
	t.Parallel()
	var vals map[string]any
	if err := yaml.Unmarshal(upstreamValues(t), &vals); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(chartDir(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range leaves(vals, "") {
		parts := strings.Split(key, ".")
		documented := slices.ContainsFunc(prefixes(parts), func(p string) bool {
			return bytes.Contains(readme, []byte("| `"+p+"`"))
		})
		if !documented {
			t.Errorf("upstream value %s has no row in charts/openepp/README.md", key)
		}
	}
}

// prefixes are the dotted prefixes of a key of two segments or more, and
// the key itself.
func prefixes(parts []string) []string {
	out := []string{strings.Join(parts, ".")}
	for n := 2; n < len(parts); n++ {
		out = append(out, strings.Join(parts[:n], "."))
	}
	return out
}

// leaves lists the dotted paths of a values tree's leaves (empty maps and
// lists count as leaves).
func leaves(v map[string]any, prefix string) []string {
	var out []string
	for k, child := range v {
		path := strings.TrimPrefix(prefix+"."+k, ".")
		if m, ok := child.(map[string]any); ok && len(m) > 0 {
			out = append(out, leaves(m, path)...)
			continue
		}
		out = append(out, path)
	}
	sort.Strings(out)
	return out
}

// TestChartFilesAreTheDeployFiles: the dashboard and alerts the chart ships
// are copies of deploy/ (which pkg/epp checks against the EPP's metrics).
func TestChartFilesAreTheDeployFiles(t *testing.T) {
	t.Parallel()
	for copyPath, orig := range map[string]string{
		"charts/openepp/files/openepp.json":        "deploy/grafana/openepp.json",
		"charts/openepp/files/openepp-alerts.yaml": "deploy/prometheus/openepp-alerts.yaml",
	} {
		a, err := os.ReadFile(filepath.Join(repoRoot(t), copyPath))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(repoRoot(t), orig))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s: copy it again", copyPath, orig)
		}
	}
	objs := render(t, install{name: release, namespace: "ns", set: []string{modelApp,
		"openepp.monitoring.grafanaDashboard=true", "openepp.monitoring.prometheusRule=true"}})
	dash := find(t, objs, "ConfigMap", eppName+"-dashboard")
	data, _ := dash.Object["data"].(map[string]any)
	want, _ := os.ReadFile(filepath.Join(repoRoot(t), "deploy/grafana/openepp.json"))
	if data["openepp.json"] != string(want) || dash.GetLabels()["grafana_dashboard"] != "1" {
		t.Error("the dashboard ConfigMap does not hold deploy/grafana/openepp.json with grafana_dashboard: \"1\"")
	}
	var rules map[string]any
	alerts, _ := os.ReadFile(filepath.Join(repoRoot(t), "deploy/prometheus/openepp-alerts.yaml"))
	if err := yaml.Unmarshal(alerts, &rules); err != nil {
		t.Fatal(err)
	}
	spec, _ := find(t, objs, "PrometheusRule", eppName).Object["spec"].(map[string]any)
	if !equalJSON(t, rules, spec) {
		t.Error("the PrometheusRule's spec is not deploy/prometheus/openepp-alerts.yaml")
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := yaml.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := yaml.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}
