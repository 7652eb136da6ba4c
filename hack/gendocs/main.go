// Command gendocs regenerates docs/plugins.md from the plugin registry.
package main

import (
	"fmt"
	"os"

	"github.com/openepp/openepp/pkg/plugins"
)

func main() {
	if err := os.WriteFile("docs/plugins.md", []byte(plugins.Markdown(plugins.Registrations())), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gendocs:", err)
		os.Exit(1)
	}
}
