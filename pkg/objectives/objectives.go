// Package objectives gives requests their priority without Kubernetes:
// InferenceObjective manifests read from a file (--objectives-file), the
// documents one would apply to a cluster, reloaded when the file changes.
// A request names its objective in x-gateway-inference-objective (or
// llm-d's x-llm-d-inference-objective) as it does in Kubernetes, so
// priority bands, shedding and in-flight eviction work for a pool of
// static endpoints too.
package objectives

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"sigs.k8s.io/gateway-api-inference-extension/apix/v1alpha2"

	"github.com/openepp/openepp/pkg/manifests"
)

// apiVersions are the groups an InferenceObjective comes in: GIE's and
// llm-d's.
var apiVersions = []string{v1alpha2.GroupVersion.String(), "llm-d.ai/v1alpha2"}

// Load reads the manifests in path and returns each objective's priority
// by name.
func Load(path string) (map[string]int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	table, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("objectives file %q: %w", path, err)
	}
	return table, nil
}

// Parse reads a YAML stream of InferenceObjective manifests (documents
// separated by ---). Fields are decoded strictly; an objective without a
// priority has priority 0, as in Kubernetes; two objectives of one name
// are refused. Every problem is reported at once.
func Parse(data []byte) (map[string]int, error) {
	table := map[string]int{}
	where := map[string]int{}
	err := manifests.Each(data, func(doc int, raw []byte) error {
		name, priority, err := parseObjective(raw)
		if err != nil {
			return err
		}
		if first, dup := where[name]; dup {
			return fmt.Errorf("objective %q is already defined by document %d", name, first)
		}
		where[name], table[name] = doc, priority
		return nil
	})
	if err != nil {
		return nil, err
	}
	return table, nil
}

func parseObjective(raw []byte) (name string, priority int, err error) {
	var obj v1alpha2.InferenceObjective
	if err := manifests.DecodeStrict(raw, &obj); err != nil {
		return "", 0, err
	}
	var errs []error
	if !slices.Contains(apiVersions, obj.APIVersion) {
		errs = append(errs, fmt.Errorf("apiVersion: want one of %s, got %q", strings.Join(apiVersions, ", "), obj.APIVersion))
	}
	if obj.Kind != "InferenceObjective" {
		errs = append(errs, fmt.Errorf("kind: want InferenceObjective, got %q", obj.Kind))
	}
	if obj.Name == "" {
		errs = append(errs, errors.New("metadata.name: required"))
	}
	if err := errors.Join(errs...); err != nil {
		return "", 0, err
	}
	if obj.Spec.Priority != nil {
		priority = *obj.Spec.Priority
	}
	return obj.Name, priority, nil
}
