package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestShippedConfigs loads every config/*.yaml as is, builds it with the
// stand-in registry, and compares the effective configuration (every default
// applied) and the build's warnings with testdata/<name>.golden.yaml.
func TestShippedConfigs(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../../config/*.yaml")
	if err != nil || len(files) < 4 {
		t.Fatalf("shipped configs: %v, %v", files, err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			b, err := build(t, string(data))
			if err != nil {
				t.Fatal(err)
			}
			got := render(t, b)
			golden := filepath.Join("testdata", name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("effective config of %s (-golden +got):\n%s", file, diff)
			}
			reloaded, err := build(t, string(got))
			if err != nil {
				t.Fatalf("the effective config does not load again: %v", err)
			}
			if diff := cmp.Diff(summary(b.Config), summary(reloaded.Config)); diff != "" {
				t.Errorf("effective config is not a fixed point (-first +second):\n%s", diff)
			}
		})
	}
}

// render is the golden form: the effective config, then the warnings as
// comments.
func render(t *testing.T, b *Built) []byte {
	t.Helper()
	out, err := yaml.Marshal(b.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range b.Warnings {
		out = append(out, "# warning: "+w+"\n"...)
	}
	return out
}

func TestDefaultTextIsShipped(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../config/default.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(DefaultText, string(data)); diff != "" {
		t.Errorf("config/default.yaml differs from DefaultText (-DefaultText +file):\n%s", diff)
	}
}
