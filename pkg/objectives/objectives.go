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
	"slices"
	"strings"

	"sigs.k8s.io/gateway-api-inference-extension/apix/v1alpha2"

	"github.com/openepp/openepp/pkg/manifests"
)

// apiVersions are the groups an InferenceObjective comes in: GIE's and
// llm-d's.
var apiVersions = []string{v1alpha2.GroupVersion.String(), "llm-d.ai/v1alpha2"}

// Priorities are objectives' priorities by name (a server.Objectives).
type Priorities map[string]int

// Priority returns the priority of the objective called name; ok is false
// when there is none of that name.
func (p Priorities) Priority(name string) (priority int, ok bool) {
	priority, ok = p[name]
	return priority, ok
}

// Priorities returns p itself (the listing /debug/policies reads).
func (p Priorities) Priorities() map[string]int { return p }

// Table is the objectives of one file: every objective together (an EPP
// serving one pool, or none, reads them whatever their spec.poolRef says)
// and per pool (an EPP serving several gives a pool's requests the
// objectives whose poolRef names it, and those without a poolRef).
type Table struct {
	All     Priorities
	byPool  map[string]Priorities
	anyPool Priorities // the objectives without a poolRef
}

// Of returns the objectives of pool.
func (t *Table) Of(pool string) Priorities {
	if p, ok := t.byPool[pool]; ok {
		return p
	}
	return t.anyPool
}

// Load reads the manifests in path.
func Load(path string) (*Table, error) { return manifests.LoadFile(path, "objectives file", Parse) }

// Parse reads a YAML stream of InferenceObjective manifests (documents
// separated by ---). Fields are decoded strictly; an objective without a
// priority has priority 0, as in Kubernetes; two objectives of one name
// are refused (names are unique in a namespace, whatever their pool).
// Every problem is reported at once.
func Parse(data []byte) (*Table, error) {
	t := &Table{All: Priorities{}, byPool: map[string]Priorities{}, anyPool: Priorities{}}
	where := map[string]int{}
	poolOf := map[string]string{}
	err := manifests.Each(data, func(doc int, raw []byte) error {
		name, priority, pool, err := parseObjective(raw)
		if err != nil {
			return err
		}
		if first, dup := where[name]; dup {
			return fmt.Errorf("objective %q is already defined by document %d", name, first)
		}
		where[name], t.All[name], poolOf[name] = doc, priority, pool
		if pool != "" && t.byPool[pool] == nil {
			t.byPool[pool] = Priorities{}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for name, pool := range poolOf {
		if pool != "" {
			t.byPool[pool][name] = t.All[name]
			continue
		}
		t.anyPool[name] = t.All[name]
		for _, p := range t.byPool {
			p[name] = t.All[name]
		}
	}
	return t, nil
}

func parseObjective(raw []byte) (name string, priority int, pool string, err error) {
	var obj v1alpha2.InferenceObjective
	if err := manifests.DecodeStrict(raw, &obj); err != nil {
		return "", 0, "", err
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
		return "", 0, "", err
	}
	if obj.Spec.Priority != nil {
		priority = *obj.Spec.Priority
	}
	return obj.Name, priority, string(obj.Spec.PoolRef.Name), nil
}
