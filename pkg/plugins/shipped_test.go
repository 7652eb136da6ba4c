package plugins_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/plugins"
)

// TestShippedConfigsBuild builds every config/*.yaml with the real plugins,
// so an example a user copies works as shipped; llm-d-pd.yaml's endpoints
// come from its file-discovery plugin.
func TestShippedConfigsBuild(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../../config/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("shipped configs: %v %v", files, err)
	}
	reg, err := plugins.InTree()
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(data)
			if err != nil {
				t.Fatal(err)
			}
			b, err := config.BuildWith(cfg, config.BuildOptions{Registry: reg})
			if err != nil {
				t.Fatal(err)
			}
			if d := b.Discovery(); (d != nil) != (filepath.Base(file) == "llm-d-pd.yaml") {
				t.Errorf("discovery plugin %v; only llm-d-pd.yaml names one", d)
			}
		})
	}
}

// TestDeployDocQuotesShippedConfigs keeps docs/deploy.md's examples the
// shipped files, so what users copy is what the tests build.
func TestDeployDocQuotesShippedConfigs(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"flow-control.yaml", "agents.yaml"} {
		file, err := os.ReadFile("../../config/" + name)
		if err != nil {
			t.Fatal(err)
		}
		body := string(file[strings.Index(string(file), "apiVersion:"):])
		if !strings.Contains(string(doc), "```yaml\n"+body+"```") {
			t.Errorf("docs/deploy.md does not quote config/%s (from apiVersion on)", name)
		}
	}
}
