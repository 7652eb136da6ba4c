package epp

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/openepp/openepp/pkg/datastore"
	"github.com/openepp/openepp/pkg/metrics"
)

// family is one metric family the EPP serves.
type family struct {
	labels map[string]bool
	// observer families (histograms, summaries) have series only under
	// the name with _bucket, _sum or _count.
	observer bool
}

// families are the EPP's metric families by name.
type families map[string]*family

// add records a family's label names (several descriptors may share a
// name: the union is kept).
func (fs families) add(name string, labels []string, observer bool) {
	f := fs[name]
	if f == nil {
		f = &family{labels: map[string]bool{}}
		fs[name] = f
	}
	for _, l := range labels {
		f.labels[l] = true
	}
	f.observer = f.observer || observer
}

// describingRegistry is a registry that also keeps what its collectors
// describe, so families of vectors that have no series yet are known too.
type describingRegistry struct {
	*prometheus.Registry
	mu   sync.Mutex
	fams families
	err  error
}

func newDescribingRegistry() *describingRegistry {
	return &describingRegistry{Registry: prometheus.NewRegistry(), fams: families{}}
}

func (r *describingRegistry) Register(c prometheus.Collector) error {
	if err := r.Registry.Register(c); err != nil {
		return err
	}
	_, observer := c.(prometheus.Observer)
	if _, vec := c.(prometheus.ObserverVec); vec {
		observer = true
	}
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	r.mu.Lock()
	defer r.mu.Unlock()
	for d := range ch {
		name, labels, err := parseDesc(d.String())
		if err != nil && r.err == nil {
			r.err = err
		}
		r.fams.add(name, labels, observer)
	}
	return nil
}

func (r *describingRegistry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// families returns what was described, with the types of collectors that
// describe their families without being an Observer (the Go collector's
// summaries) taken from a gather.
func (r *describingRegistry) families() (families, error) {
	mfs, err := r.Gather()
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, mf := range mfs {
		if f := r.fams[mf.GetName()]; f != nil {
			t := mf.GetType()
			f.observer = f.observer || t == dto.MetricType_HISTOGRAM || t == dto.MetricType_SUMMARY
		}
	}
	return r.fams, r.err
}

// parseDesc reads the name and label names (constant and variable) out of
// prometheus.Desc.String():
// Desc{fqName: "n", help: "h", unit: "u", constLabels: {a="x",b="y"}, variableLabels: {c,d}}.
func parseDesc(s string) (string, []string, error) {
	bad := fmt.Errorf("unexpected descriptor %s", s)
	rest, ok := strings.CutPrefix(s, "Desc{fqName: ")
	if !ok {
		return "", nil, bad
	}
	var name string
	var fields [3]string
	for i, next := range []string{", help: ", ", unit: ", ", constLabels: {"} {
		q, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return "", nil, bad
		}
		fields[i], _ = strconv.Unquote(q)
		if rest, ok = strings.CutPrefix(rest[len(q):], next); !ok {
			return "", nil, bad
		}
	}
	name = fields[0]
	var labels []string
	for !strings.HasPrefix(rest, "}") {
		label, value, ok := strings.Cut(rest, "=")
		q, err := strconv.QuotedPrefix(value)
		if !ok || err != nil {
			return "", nil, bad
		}
		labels = append(labels, label)
		rest = strings.TrimPrefix(value[len(q):], ",")
	}
	vars, ok := strings.CutPrefix(rest, "}, variableLabels: {")
	if vars, _, ok = strings.Cut(vars, "}"); !ok {
		return "", nil, bad
	}
	for _, l := range strings.Split(vars, ",") {
		if l != "" {
			labels = append(labels, strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")"))
		}
	}
	return name, labels, nil
}

// everyFamilyConfig turns on every optional part that registers metrics:
// flow control, the prefix index, disaggregation, model-list polling, the
// latency predictor, the request-attribute reporter and precise prefix
// matching.
const everyFamilyConfig = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
featureGates: [flowControl]
plugins:
- type: disagg-profile-handler
  parameters:
    deciders: {prefill: prefix-based-pd-decider}
- type: prefix-based-pd-decider
- type: decode-filter
- type: prefill-filter
- type: prefix-cache-scorer
- type: max-score-picker
- type: concurrency-detector
- type: models-responder
- type: predicted-latency-producer
- type: request-attribute-reporter
  parameters: {attributes: [{key: {name: cost}, expression: "usage.total_tokens"}]}
- type: token-producer
  parameters: {backend: vllm, vllm: {url: "http://127.0.0.1:1"}}
- type: precise-prefix-cache-producer
  parameters: {kvEventsConfig: {zmqEndpoint: "tcp://127.0.0.1:0"}}
saturationDetector: {pluginRef: concurrency-detector}
schedulingProfiles:
- name: decode
  plugins: [{pluginRef: decode-filter}, {pluginRef: prefix-cache-scorer}, {pluginRef: max-score-picker}]
- name: prefill
  plugins: [{pluginRef: prefill-filter}, {pluginRef: prefix-cache-scorer}, {pluginRef: max-score-picker}]
flowControl: {maxRequests: 100}
`

// servedFamilies are the metric families the EPP's /metrics can serve:
// the EPP is assembled as Run assembles it, from an endpoints file, with
// everyFamilyConfig and the optional stream metrics, on a registry that
// keeps its collectors' descriptors; then started and stopped. The pool
// gauges exist only with --pool-name, which needs Kubernetes: the
// scraper's options are built again with a pool name and its collectors
// described. Last, every family an alias table serves under a second name
// is added under that name, with the labels the alias gives it.
func servedFamilies(t *testing.T) families {
	t.Helper()
	file := filepath.Join(t.TempDir(), "endpoints.yaml")
	if err := os.WriteFile(file, []byte("- {name: s0, address: 127.0.0.1, port: 1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := newDescribingRegistry()
	quiet := logr.Discard()
	a, err := assemble([]string{"--endpoints-file", file, "--config-text", everyFamilyConfig,
		"--bind-address", "127.0.0.1", "--grpc-port", "0", "--grpc-health-port", "0", "--metrics-port", "-1",
		"--secure-serving=false", "--tracing=false", "--enable-grpc-stream-metrics",
		"--replica-sync-port", "0", "--replica-sync-peers", "127.0.0.1:1"}, &settings{log: &quiet}, reg)
	if err != nil {
		t.Fatal(err)
	}
	stopped, stop := context.WithCancel(context.Background())
	stop()
	if err := a.run(stopped); err != nil {
		t.Fatalf("run: %v", err)
	}
	poolReg := newDescribingRegistry()
	a.flags.Kube.PoolName = "pool"
	if _, err := metrics.New(datastore.New(), a.scraperOptions(a.built, poolReg)); err != nil {
		t.Fatalf("scraper with a pool name: %v", err)
	}
	fams, err := reg.families()
	if err != nil {
		t.Fatal(err)
	}
	poolFams, err := poolReg.families()
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range poolFams {
		fams.add(name, slices.Collect(maps.Keys(f.labels)), f.observer)
	}
	addAliases(fams)
	return fams
}

// addAliases adds the second names the metrics page serves (aliasTables).
func addAliases(fams families) {
	for _, table := range aliasTables() {
		for _, a := range table {
			from := fams[a.From]
			if from == nil {
				continue
			}
			var labels []string
			for l := range from.labels { // summed away first, then renamed, as promalias does
				if slices.Contains(a.Sum, l) {
					continue
				}
				if renamed, ok := a.Labels[l]; ok {
					l = renamed
				}
				labels = append(labels, l)
			}
			labels = append(labels, slices.Collect(maps.Keys(a.Set))...)
			fams.add(a.To, labels, from.observer)
		}
	}
}
