package plugins

import (
	"os"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/config"
)

func TestInTreeHasNoDuplicates(t *testing.T) {
	t.Parallel()
	reg, err := InTree()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(reg.Types()), len(Registrations()); got != want {
		t.Errorf("registry has %d types, want %d", got, want)
	}
	if _, err := InTree(Registrations()[0]); err == nil {
		t.Error("registering a built-in type twice was accepted")
	}
}

// TestRefusedTypesAreNotBuiltIn: a type config refuses with a reason must
// not also be registered, or the reason would be stale.
func TestRefusedTypesAreNotBuiltIn(t *testing.T) {
	t.Parallel()
	reg, err := InTree()
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range config.UnsupportedTypes() {
		if slices.Contains(reg.Types(), typ) {
			t.Errorf("%q is built in and still listed as unsupported in pkg/config", typ)
		}
	}
}

func TestEveryRegistrationIsDocumented(t *testing.T) {
	t.Parallel()
	for _, r := range Registrations() {
		if r.Summary == "" {
			t.Errorf("%s: no summary", r.Type)
		}
		if kind(r) == "Other" {
			t.Errorf("%s: factory lives in a package with no docs section", r.Type)
		}
	}
}

// TestPluginDocsUpToDate keeps docs/plugins.md in step with the registry.
func TestPluginDocsUpToDate(t *testing.T) {
	t.Parallel()
	got, err := os.ReadFile("../../docs/plugins.md")
	if err != nil {
		t.Fatalf("%v (run `make docs`)", err)
	}
	if d := cmp.Diff(Markdown(Registrations()), string(got)); d != "" {
		t.Errorf("docs/plugins.md is stale; run `make docs` (-want +got):\n%s", d)
	}
}
