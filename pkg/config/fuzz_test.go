package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

// FuzzLoad checks Load (what --config-text and --config-file go through)
// on any bytes: it never panics; a rejected file comes back as an *Error
// listing at least one problem, each with a message; and an accepted one,
// printed as the golden files print it, loads again to the same config and
// prints the same (the effective config is a fixed point).
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("../../config/*.yaml")
	golden, _ := filepath.Glob("testdata/*.golden.yaml")
	for _, file := range append(files, golden...) {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, tc := range loadErrorCases {
		f.Add([]byte(tc.yaml))
	}
	f.Add([]byte(header + "plugins: [{type: queue-scorer, parameters: {a: 1e400, b: [0x10, .inf]}}]\n"))
	f.Add([]byte(header + "flowControl: {maxBytes: 1.5Gi, defaultRequestTTL: 90s, priorityBands: [{priority: -1}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Load(data)
		if err != nil {
			checkLoadError(t, err, cfg)
			return
		}
		first, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatalf("accepted config does not print: %v", err)
		}
		again, err := Load(first)
		if err != nil {
			t.Fatalf("printed config does not load: %v\ninput %q\nprinted %q", err, data, first)
		}
		if diff := cmp.Diff(cfg, again, configCmp...); diff != "" {
			t.Fatalf("reloaded config differs (-first +reloaded):\n%s\ninput %q", diff, data)
		}
		second, err := yaml.Marshal(again)
		if err != nil || string(second) != string(first) {
			t.Fatalf("printed config is not a fixed point (%v):\n%s\nthen\n%s", err, first, second)
		}
	})
}

// configCmp compares configs by value: quantities by amount, and not who
// added a plugin (a default plugin printed and reloaded is the user's).
var configCmp = []cmp.Option{
	cmpopts.IgnoreUnexported(PluginSpec{}),
	cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 }),
}

func checkLoadError(t *testing.T, err error, cfg *Config) {
	t.Helper()
	var e *Error
	switch {
	case cfg != nil:
		t.Fatalf("Load returned a config with error %v", err)
	case !errors.As(err, &e) || len(e.Problems) == 0:
		t.Fatalf("Load error %q (%T) is not an *Error with problems", err, err)
	}
	for _, p := range e.Problems {
		if p.Message == "" {
			t.Fatalf("problem at %q has no message: %v", p.Path, err)
		}
	}
}
