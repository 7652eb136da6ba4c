// Package configtest builds EndpointPickerConfig text with the in-tree
// plugins, for the tests of plugins that a config file reaches.
package configtest

import (
	"testing"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/plugins"
)

// Header is the first lines of an llm-d EndpointPickerConfig file.
const Header = "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n"

// Build loads Header + yaml and builds it with plugins.InTree(); a registry
// that cannot be built fails the test.
func Build(t testing.TB, yaml string) (*config.Built, error) {
	t.Helper()
	reg, err := plugins.InTree()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load([]byte(Header + yaml))
	if err != nil {
		return nil, err
	}
	return config.Build(cfg, reg, nil)
}
