// Package arch keeps the dependency arrows of ARCHITECTURE.md true: every
// package may import only the project packages its layer allows.
package arch

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/openepp/openepp"

// allowed lists, per package prefix (relative to the module), the project
// package prefixes it may import. The longest matching key applies.
var allowed = map[string][]string{
	"pkg/endpoint":       {},
	"pkg/request":        {},
	"pkg/indexlist":      {},
	"pkg/certfile":       {},
	"pkg/labelbudget":    {},
	"pkg/promalias":      {},
	"pkg/promreg":        {},
	"pkg/fetchfail":      {},
	"pkg/apierror":       {},
	"pkg/kvevents":       {},
	"pkg/logevery":       {},
	"pkg/datastore":      {"pkg/endpoint"},
	"pkg/poolroute":      {"pkg/endpoint"},
	"pkg/filewatch":      {},
	"pkg/manifests":      {},
	"pkg/objectives":     {"pkg/filewatch", "pkg/manifests"},
	"pkg/modelrewrite":   {"pkg/filewatch", "pkg/manifests"},
	"pkg/enginepriority": {"pkg/endpoint"},
	"pkg/discovery":      {"pkg/endpoint", "pkg/scheduler", "pkg/filewatch"},
	"pkg/metrics":        {"pkg/endpoint", "pkg/datastore", "pkg/scheduler", "pkg/certfile", "pkg/promalias", "pkg/fetchfail"},
	"pkg/controller":     {"pkg/endpoint", "pkg/datastore", "pkg/modelrewrite"},
	"pkg/scheduler":      {"pkg/endpoint", "pkg/request", "pkg/scheduler"},
	"pkg/prefix":         {"pkg/endpoint", "pkg/request", "pkg/scheduler", "pkg/promalias", "pkg/promreg"},
	"pkg/inflight":       {"pkg/endpoint", "pkg/scheduler"},
	"pkg/filters":        {"pkg/endpoint", "pkg/request", "pkg/scheduler", "pkg/inflight", "pkg/promreg"},
	"pkg/scorers":        {"pkg/endpoint", "pkg/request", "pkg/scheduler", "pkg/prefix", "pkg/indexlist", "pkg/inflight", "pkg/logevery", "pkg/promreg"},
	"pkg/pickers":        {"pkg/endpoint", "pkg/request", "pkg/scheduler"},
	"pkg/profiles":       {"pkg/endpoint", "pkg/request", "pkg/scheduler"},
	"pkg/flowcontrol":    {"pkg/endpoint", "pkg/scheduler", "pkg/promreg"},
	"pkg/eviction":       {"pkg/scheduler", "pkg/flowcontrol"},
	"pkg/requestcontrol": {"pkg/endpoint", "pkg/scheduler", "pkg/promreg", "pkg/logevery"},
	"pkg/latency":        {"pkg/endpoint", "pkg/scheduler", "pkg/inflight", "pkg/prefix", "pkg/promalias", "pkg/promreg"},
	"pkg/httppoll":       {"pkg/certfile", "pkg/fetchfail", "pkg/promalias", "pkg/promreg"},
	"pkg/models":         {"pkg/endpoint", "pkg/scheduler", "pkg/certfile", "pkg/fetchfail", "pkg/promalias", "pkg/promreg", "pkg/httppoll"},
	"pkg/dcgm":           {"pkg/endpoint", "pkg/scheduler", "pkg/certfile", "pkg/fetchfail", "pkg/logevery", "pkg/promalias", "pkg/promreg", "pkg/httppoll"},
	"pkg/disagg":         {"pkg/endpoint", "pkg/request", "pkg/scheduler", "pkg/prefix", "pkg/labelbudget", "pkg/promalias", "pkg/promreg"},
	"pkg/precise":        {"pkg/endpoint", "pkg/request", "pkg/scheduler", "pkg/prefix", "pkg/kvevents", "pkg/promreg", "pkg/certfile", "pkg/logevery"},
	"pkg/mmcache":        {"pkg/endpoint", "pkg/request", "pkg/scheduler", "pkg/prefix", "pkg/promreg"},
	"pkg/p2psource":      {"pkg/endpoint", "pkg/scheduler", "pkg/prefix", "pkg/promreg"},
	"pkg/topology":       {"pkg/endpoint", "pkg/scheduler", "pkg/inflight"},
	"pkg/labelattr":      {"pkg/endpoint", "pkg/scheduler"},
	"pkg/burst":          {"pkg/endpoint", "pkg/scheduler", "pkg/prefix", "pkg/promreg"},
	"pkg/replicasync":    {"pkg/endpoint", "pkg/prefix", "pkg/scheduler", "pkg/fetchfail"},
	"pkg/plugins":        {"pkg/endpoint", "pkg/request", "pkg/scheduler", "pkg/prefix", "pkg/filters", "pkg/scorers", "pkg/pickers", "pkg/profiles", "pkg/metrics", "pkg/datastore", "pkg/flowcontrol", "pkg/inflight", "pkg/disagg", "pkg/discovery", "pkg/models", "pkg/requestcontrol", "pkg/latency", "pkg/precise", "pkg/mmcache", "pkg/p2psource", "pkg/topology", "pkg/burst", "pkg/eviction", "pkg/dcgm", "pkg/labelattr"},
	"pkg/config":         {"pkg/endpoint", "pkg/request", "pkg/scheduler", "pkg/filewatch", "pkg/manifests"},
	"pkg/server":         {"pkg/endpoint", "pkg/request", "pkg/apierror", "pkg/scheduler", "pkg/certfile", "pkg/labelbudget", "pkg/promalias", "pkg/poolroute"},
	"pkg/extproc":        {},
	"pkg/tracing":        {},
	"pkg/gateway":        {"pkg/extproc"},
	"pkg/sim":            {"pkg/sim", "pkg/indexlist", "pkg/apierror", "pkg/kvevents"},
	"pkg/pdsidecar":      {"pkg/apierror"},
	"pkg/loadgen":        {"pkg/extproc"},
	"pkg/fleet":          {"pkg/endpoint", "pkg/request", "pkg/scheduler", "pkg/config", "pkg/flowcontrol", "pkg/eviction", "pkg/plugins", "pkg/sim", "pkg/fleet", "pkg/prefix", "pkg/scorers", "pkg/filters", "pkg/pickers", "pkg/profiles", "pkg/metrics", "pkg/datastore", "pkg/indexlist", "pkg/inflight", "pkg/disagg", "pkg/p2psource", "pkg/precise", "pkg/kvevents"},
	"pkg/epp":            {"pkg/"},
	"cmd/":               {"pkg/"},
	"examples/":          {"pkg/", "examples/"},
	"hack/":              {"pkg/", "hack/"},
	"test/":              {"pkg/"},
	"test/policy":        {}, // shared by test/manifests and the nested test/helmchart module
}

type pkg struct {
	ImportPath string
	Imports    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func rule(rel string) ([]string, bool) {
	best := ""
	for k := range allowed {
		if strings.HasPrefix(rel, k) && len(k) > len(best) {
			best = k
		}
	}
	if best == "" {
		return nil, false
	}
	return allowed[best], true
}

func TestDependencyDirection(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		allow, ok := rule(rel)
		if !ok {
			t.Errorf("%s: no dependency rule; add it to allowed in test/arch", rel)
			continue
		}
		if strings.HasPrefix(rel, "pkg/") && strings.Count(rel, "/") > 3 {
			t.Errorf("%s: deeper than 3 levels below pkg/", rel)
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			dep := strings.TrimPrefix(imp, module+"/")
			if strings.HasPrefix(dep, "cmd/") {
				t.Errorf("%s imports %s: nothing may import cmd", rel, dep)
			}
			if !slices.ContainsFunc(allow, func(a string) bool { return strings.HasPrefix(dep, a) }) {
				t.Errorf("%s imports %s, which its layer does not allow", rel, dep)
			}
		}
	}
}

// TestFileSizes keeps non-test Go files at or under 500 lines (style.md).
func TestFileSizes(t *testing.T) {
	root := "../.."
	_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		n := 0
		for s := bufio.NewScanner(f); s.Scan(); {
			n++
		}
		if n > 500 {
			t.Errorf("%s has %d lines; split it (limit 500)", path, n)
		}
		return nil
	})
}
