// Package objectives gives requests their priority without Kubernetes:
// InferenceObjective manifests read from a file (--objectives-file), the
// documents one would apply to a cluster, reloaded when the file changes.
// A request names its objective in x-gateway-inference-objective (or
// llm-d's x-llm-d-inference-objective) as it does in Kubernetes, so
// priority bands, shedding and in-flight eviction work for a pool of
// static endpoints too.
package objectives

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/gateway-api-inference-extension/apix/v1alpha2"
	"sigs.k8s.io/yaml"
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
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var errs []error
	for doc := 1; ; doc++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if len(bytes.TrimSpace(raw)) == 0 || isComment(raw) {
			continue
		}
		name, priority, err := parseObjective(raw)
		if err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", doc, err))
			continue
		}
		if first, dup := where[name]; dup {
			errs = append(errs, fmt.Errorf("document %d: objective %q is already defined by document %d", doc, name, first))
			continue
		}
		where[name], table[name] = doc, priority
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return table, nil
}

// isComment reports a document of comments only.
func isComment(raw []byte) bool {
	for _, line := range strings.Split(string(raw), "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

func parseObjective(raw []byte) (name string, priority int, err error) {
	js, err := yaml.YAMLToJSONStrict(raw)
	if err != nil {
		return "", 0, err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var obj v1alpha2.InferenceObjective
	if err := dec.Decode(&obj); err != nil {
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
