package modelrewrite

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/gateway-api-inference-extension/apix/v1alpha2"

	"github.com/openepp/openepp/pkg/filewatch"
	"github.com/openepp/openepp/pkg/manifests"
)

// apiVersions are the groups an InferenceModelRewrite comes in, in
// precedence order (Index): llm-d's, then GIE's.
var apiVersions = []string{"llm-d.ai/v1alpha2", v1alpha2.GroupVersion.String()}

// Table is the rules of one file: for every pool together (an EPP serving
// one pool, or none, reads the rules whatever their spec.poolRef says) and
// per pool (an EPP serving several applies a rule to the pool its poolRef
// names; one without a poolRef applies to every pool).
type Table struct {
	all     *Index
	byPool  map[string]*Index
	anyPool *Index // the rules without a poolRef
	objects int
}

// Objects counts the InferenceModelRewrite objects the rules came from.
func (t *Table) Objects() int { return t.objects }

// Of returns the rules of pool (the rules without a poolRef when the file
// names none for it).
func (t *Table) Of(pool string) *Index {
	if ix, ok := t.byPool[pool]; ok {
		return ix
	}
	return t.anyPool
}

// Load reads the manifests in path.
func Load(path string) (*Table, error) { return manifests.LoadFile(path, "model rewrites file", Parse) }

// Parse reads a YAML stream of InferenceModelRewrite manifests. An earlier
// document counts as an older object (precedence among rules of one kind).
// Fields are decoded strictly and checked as the API server's validation
// would; two objects of one name and group are refused. Every problem is
// reported at once.
func Parse(data []byte) (*Table, error) {
	groups := make([][]*v1alpha2.InferenceModelRewrite, len(apiVersions))
	where := map[string]int{}
	err := manifests.Each(data, func(doc int, raw []byte) error {
		var obj v1alpha2.InferenceModelRewrite
		if err := manifests.DecodeStrict(raw, &obj); err != nil {
			return err
		}
		g := slices.Index(apiVersions, obj.APIVersion)
		if err := validate(&obj, g); err != nil {
			return err
		}
		key := obj.APIVersion + "/" + obj.Name
		if first, dup := where[key]; dup {
			return fmt.Errorf("model rewrite %q (%s) is already defined by document %d", obj.Name, obj.APIVersion, first)
		}
		where[key] = doc
		groups[g] = append(groups[g], &obj)
		return nil
	})
	if err != nil {
		return nil, err
	}
	t := &Table{all: Compile(groups...), byPool: map[string]*Index{}, objects: len(where)}
	var pools []string
	for _, objs := range groups {
		for _, o := range objs {
			if p := poolOf(o); p != "" && !slices.Contains(pools, p) {
				pools = append(pools, p)
			}
		}
	}
	t.anyPool = Compile(inPool(groups, "")...)
	for _, p := range pools {
		t.byPool[p] = Compile(inPool(groups, p)...)
	}
	return t, nil
}

// poolOf is the pool o's poolRef names ("" for none).
func poolOf(o *v1alpha2.InferenceModelRewrite) string {
	if o.Spec.PoolRef == nil {
		return ""
	}
	return string(o.Spec.PoolRef.Name)
}

// inPool keeps, group by group, the objects that apply to pool: those
// naming it and those naming none.
func inPool(groups [][]*v1alpha2.InferenceModelRewrite, pool string) [][]*v1alpha2.InferenceModelRewrite {
	out := make([][]*v1alpha2.InferenceModelRewrite, len(groups))
	for g, objs := range groups {
		for _, o := range objs {
			if p := poolOf(o); p == "" || p == pool {
				out[g] = append(out[g], o)
			}
		}
	}
	return out
}

// validate checks what the CRD's schema would (g is the index of the
// object's apiVersion, -1 when unknown). spec.poolRef is optional here:
// a file may serve pools that have no object to refer to.
func validate(o *v1alpha2.InferenceModelRewrite, g int) error {
	var errs []error
	if g < 0 {
		errs = append(errs, fmt.Errorf("apiVersion: want one of %s, got %q", strings.Join(apiVersions, ", "), o.APIVersion))
	}
	if o.Kind != "InferenceModelRewrite" {
		errs = append(errs, fmt.Errorf("kind: want InferenceModelRewrite, got %q", o.Kind))
	}
	if o.Name == "" {
		errs = append(errs, errors.New("metadata.name: required"))
	}
	if o.Spec.PoolRef != nil && o.Spec.PoolRef.Name == "" {
		errs = append(errs, errors.New("spec.poolRef.name: required when poolRef is given"))
	}
	if len(o.Spec.Rules) == 0 {
		errs = append(errs, errors.New("spec.rules: at least one rule is required"))
	}
	for i, r := range o.Spec.Rules {
		at := fmt.Sprintf("spec.rules[%d]", i)
		if len(r.Targets) == 0 {
			errs = append(errs, fmt.Errorf("%s.targets: at least one target is required", at))
		}
		weighted := 0
		for j, t := range r.Targets {
			switch {
			case t.ModelRewrite == "":
				errs = append(errs, fmt.Errorf("%s.targets[%d].modelRewrite: required", at, j))
			case t.Weight < 0 || t.Weight > 1000000:
				errs = append(errs, fmt.Errorf("%s.targets[%d].weight: %d is not in 1..1000000", at, j, t.Weight))
			}
			if t.Weight > 0 {
				weighted++
			}
		}
		if weighted > 0 && weighted < len(r.Targets) {
			errs = append(errs, fmt.Errorf("%s.targets: a weight is set for some targets and not others: set it for all or none", at))
		}
		for j, m := range r.Matches {
			switch {
			case m.Model == nil || m.Model.Value == "":
				errs = append(errs, fmt.Errorf("%s.matches[%d].model.value: required", at, j))
			case m.Model.Type != nil && *m.Model.Type != v1alpha2.MatchExact:
				errs = append(errs, fmt.Errorf("%s.matches[%d].model.type: %q is not supported (only Exact)", at, j, *m.Model.Type))
			}
		}
	}
	return errors.Join(errs...)
}

// File is a model-rewrites file's rules for the request path, reloaded
// when the file changes (Start); a broken new version keeps the last good
// rules. It is a server.Rewrites for an EPP serving one pool or none; Of
// gives one pool's rules when the EPP serves several.
type File struct {
	*filewatch.Reloaded[*Table]
}

// NewFile loads path (an invalid file is an error: there are no last good
// rules yet). reg may be nil.
func NewFile(path string, log logr.Logger, reg prometheus.Registerer) (*File, error) {
	r, err := filewatch.NewReloaded(path, filewatch.ReloadOptions[*Table]{
		What: "model rewrites file", Load: Load, Log: log, RejectedMetric: "openepp_model_rewrites_file_reload_errors_total",
		Summary: func(t *Table) []any { return []any{"objects", t.objects} },
	}, reg)
	if err != nil {
		return nil, err
	}
	return &File{r}, nil
}

// Rewrite applies every rule of the file, whatever pool it names.
func (f *File) Rewrite(model string, rnd *rand.Rand) (target, object string, ok bool) {
	return f.Current().all.Rewrite(model, rnd)
}

// Claims reports whether an exact rule of the file names model.
func (f *File) Claims(model string) bool { return f.Current().all.Claims(model) }

// Of returns the current rules of pool (Table.Of).
func (f *File) Of(pool string) *Index { return f.Current().Of(pool) }

// Rules lists every rule of the file (Index.Rules).
func (f *File) Rules() []Rule { return f.Current().all.Rules() }
