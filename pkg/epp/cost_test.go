package epp

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestCostCommand: `epp cost` times a config against the default on the
// same requests and prints both, and refuses what it cannot measure.
func TestCostCommand(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	err := Cost(context.Background(), []string{"--config", "../../config/openepp-recommended.yaml", "--endpoints", "10",
		"--duration", "40ms"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{"× baseline", "openepp-recommended.yaml", "upstream default", "10 endpoints, 1 KiB"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	dir := t.TempDir()
	noneLeft := filepath.Join(dir, "none-left.yaml")
	writeConfig(t, noneLeft, `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: prefill-filter
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins: [{pluginRef: prefill-filter}, {pluginRef: max-score-picker}]
`)
	for name, args := range map[string][]string{
		"missing file":     {"--config", filepath.Join(dir, "absent.yaml")},
		"broken config":    {"--compare", "cost_test.go"},
		"no endpoint left": {"--config", noneLeft},
		"no endpoints":     {"--endpoints", "0"},
		"stray argument":   {"now"},
	} {
		if err := Cost(context.Background(), append(args, "--duration", "10ms"), &bytes.Buffer{}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
