package fleet

import (
	"errors"
	"fmt"
	"strings"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/plugins"
	"github.com/openepp/openepp/pkg/scheduler"
)

// Policy is a routing policy under test: either an EndpointPickerConfig run
// through OpenEPP's real scheduler and plugins, or a built-in baseline.
type Policy struct {
	// Name labels the policy in results.
	Name string
	// Description says what it is, for the report.
	Description string
	// Config is an EndpointPickerConfig; when set the policy is that config
	// run through the in-tree plugins plus Plugins.
	Config []byte
	// Plugins are out-of-tree plugin types the config may use.
	Plugins []scheduler.Registration
	// EnginePriority is the EPP's --engine-priority: each request carries
	// its class's priority into the servers, which schedule by it (vLLM's
	// --scheduling-policy priority: waiting requests in priority order, the
	// least important running one preempted first).
	EnginePriority bool
	// builtin names a baseline implemented in this package.
	builtin string
}

// Names of the standard policies.
const (
	PolicyRandom          = "random"
	PolicyRoundRobin      = "round-robin"
	PolicyLeastQueue      = "least-queue"
	PolicyPrefixOnly      = "prefix-only"
	PolicyUpstreamDefault = "upstream-default"
	PolicyOursDefault     = "ours-default"
	PolicyOursBest        = "ours-best"
	// PolicyLLMDBaseline is llm-d's optimized-baseline config, run through
	// OpenEPP's implementation of its plugins; benchfleet adds it.
	PolicyLLMDBaseline = "llm-d-baseline"
)

// prefixOnlyConfig is prefix-cache-scorer alone: affinity with no load
// signal, the configuration that collapses under load.
const prefixOnlyConfig = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: prefix-cache-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: prefix-cache-scorer
`

// Builtin returns the baseline called name: random, round-robin,
// least-queue or upstream-default.
func Builtin(name string) (Policy, error) {
	desc, ok := builtinDescriptions[name]
	if !ok {
		return Policy{}, fmt.Errorf("unknown built-in policy %q (known: %s, %s, %s, %s)",
			name, PolicyRandom, PolicyRoundRobin, PolicyLeastQueue, PolicyUpstreamDefault)
	}
	return Policy{Name: name, Description: desc, builtin: name}, nil
}

var builtinDescriptions = map[string]string{
	PolicyRandom:          "uniformly random server",
	PolicyRoundRobin:      "servers in turn (the Kubernetes Service baseline)",
	PolicyLeastQueue:      "fewest waiting requests in the last scrape, ties at random",
	PolicyUpstreamDefault: "upstream GIE v1.5.0 default config (queue 2, kv-cache 2, prefix 3) re-implemented from its documented formulas",
}

// ConfigPolicy returns a policy running the EndpointPickerConfig in yaml
// through OpenEPP's plugins.
func ConfigPolicy(name, description string, yaml []byte, extra ...scheduler.Registration) Policy {
	return Policy{Name: name, Description: description, Config: yaml, Plugins: extra}
}

// StandardPolicies returns the policies of the fleet benchmark, in report
// order; best is OpenEPP's recommended configuration.
func StandardPolicies(best []byte) []Policy {
	var out []Policy
	for _, n := range []string{PolicyRandom, PolicyRoundRobin, PolicyLeastQueue} {
		p, _ := Builtin(n)
		out = append(out, p)
	}
	up, _ := Builtin(PolicyUpstreamDefault)
	return append(out,
		ConfigPolicy(PolicyPrefixOnly, "prefix-cache-scorer alone (OpenEPP plugins): affinity without load awareness", []byte(prefixOnlyConfig)),
		up,
		ConfigPolicy(PolicyOursDefault, "the upstream default config file run through OpenEPP's plugins", []byte(config.DefaultText)),
		ConfigPolicy(PolicyOursBest, "OpenEPP's recommended config (config/openepp-recommended.yaml)", best),
	)
}

// SelectPolicies picks policies by name from all, in the order given.
func SelectPolicies(all []Policy, names []string) ([]Policy, error) {
	var out []Policy
	var errs []error
	for _, n := range names {
		found := false
		for _, p := range all {
			if p.Name == n {
				out, found = append(out, p), true
				break
			}
		}
		if !found {
			errs = append(errs, fmt.Errorf("unknown policy %q (known: %s)", n, policyNames(all)))
		}
	}
	return out, errors.Join(errs...)
}

func policyNames(ps []Policy) string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}

// validate checks that the policy can be built, without running it.
func (p Policy) validate() error {
	if p.Name == "" {
		return errors.New("policy: name must not be empty")
	}
	if p.builtin == "" && len(p.Config) == 0 {
		return fmt.Errorf("policy %q: neither a config nor a built-in baseline", p.Name)
	}
	return nil
}

// newRouter builds a fresh router for one run: one router, or one per EPP
// replica (replicas.go).
func (p Policy) newRouter(env routerEnv) (router, error) {
	if rep := env.replication; rep.Replicas > 1 {
		return newReplicated(rep, env, p.newReplica)
	}
	return p.newReplica(env)
}

// newReplica builds the router of one EPP replica.
func (p Policy) newReplica(env routerEnv) (router, error) {
	n := len(env.endpoints)
	switch p.builtin {
	case PolicyRandom:
		return &randomRouter{n: n, rng: newRand(env.seed)}, nil
	case PolicyRoundRobin:
		return &roundRobin{n: n}, nil
	case PolicyLeastQueue:
		return &leastQueue{eps: env.endpoints, rng: newRand(env.seed)}, nil
	case PolicyUpstreamDefault:
		return newUpstreamRouter(env.endpoints, env.seed), nil
	}
	reg, err := plugins.InTree(p.Plugins...)
	if err != nil {
		return nil, fmt.Errorf("policy %q: registry: %w", p.Name, err)
	}
	r, err := newSchedRouter(p.Config, reg, env)
	if err != nil {
		return nil, fmt.Errorf("policy %q: %w", p.Name, err)
	}
	return r, nil
}
