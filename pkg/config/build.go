package config

import (
	"errors"
	"fmt"
	"strings"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/manifests"
	"github.com/openepp/openepp/pkg/scheduler"
)

// Built is a configuration turned into live plugin instances and a
// scheduler. It is immutable; a reload builds a new one.
type Built struct {
	// Config is the effective configuration: the input with every default
	// applied, including those that depend on what the plugins are.
	Config    *Config
	Scheduler *scheduler.Scheduler
	// Plugins holds every instance in Config.Plugins order, so the EPP can
	// find data-layer and flow-control plugins by interface (see Instances).
	// A default plugin skipped because its type is not registered is absent.
	Plugins []scheduler.Plugin
	// Runnables are the instances with background work; on a reload use
	// Changes to start and stop only what changed.
	Runnables []NamedRunnable
	// Warnings are findings that do not stop the build, one line each: a
	// weight on a non-scorer (ignored, as upstream does) or an optional
	// default plugin whose type is not registered (skipped).
	Warnings []string
	// Hash identifies the loaded configuration (before build-time
	// defaults); equal files give equal hashes.
	Hash string

	byName map[string]scheduler.Plugin
	flow   *FlowPlan
	keys   map[string]string
	reused map[string]bool
	heirs  map[string]bool // rebuilt instances that inherited their predecessor's state
}

// NamedRunnable is a plugin instance with background work.
type NamedRunnable struct {
	Name     string
	Runnable scheduler.Runnable
}

// BuildOptions configures BuildWith.
type BuildOptions struct {
	Registry *scheduler.Registry
	// Handle is given to every factory (with the plugin's name added to its
	// logger); nil means a discarding logger and the real clock.
	Handle *scheduler.Handle
	// Seed is passed to scheduler.New; 0 picks a random one.
	Seed uint64
	// Timer, if set, is told how long every plugin call takes.
	Timer scheduler.PluginTimer
	// Previous is the running configuration on a reload. An instance whose
	// name, type and canonical parameters are unchanged is reused instead of
	// rebuilt, so stateful plugins (the prefix index, session maps) keep
	// their state. Instances implementing scheduler.Resolver are always
	// rebuilt, since Resolve must not run on a live instance. A rebuilt
	// scheduler.Inheritor inherits from the instance it replaces.
	Previous *Built
	// ModelLists asks for every server's model list even without a
	// models-responder: an EPP serving several pools tells them apart by
	// the models their servers list. A models-data-source is added as
	// for models-responder (unless dataLayer.sources lists one).
	ModelLists bool
}

// Build instantiates every plugin of cfg through its factory in reg, calls
// Resolve on resolvers, and assembles the scheduler. cfg is not modified.
func Build(cfg *Config, reg *scheduler.Registry, h *scheduler.Handle) (*Built, error) {
	return BuildWith(cfg, BuildOptions{Registry: reg, Handle: h})
}

// BuildWith is Build with a seed and instance reuse from a previous build.
// Problems come back together in an *Error: schema problems, unknown types
// and factory errors in one round (plugins are built even when the schema
// has problems, so the user sees them all); Resolve runs only once every
// plugin was built.
func BuildWith(cfg *Config, opts BuildOptions) (*Built, error) {
	if cfg == nil || opts.Registry == nil {
		return nil, errors.New("build config: config and registry are required")
	}
	b := newBuilder(cfg.Clone(), opts)
	if opts.ModelLists {
		ensureModelSource(b.cfg)
	}
	applyDefaults(b.cfg, nil)
	b.ps = schemaProblems(b.cfg)
	hash := hashOf(b.cfg)
	b.instantiate()
	applyDefaults(b.cfg, b.kind)
	b.instantiate()
	b.validateKinds()
	if b.cfg.FlowControl != nil && !b.cfg.flowOn() {
		b.warnings = append(b.warnings, "flowControl: ignored because the flowControl feature gate is off; requests go straight "+
			"to scheduling and sheddable ones (priority < 0) are refused with 429 while the saturation detector rates the pool >= 1")
	}
	if len(b.ps) == 0 {
		b.resolve()
		b.attachExtractors()
	}
	if err := b.ps.err(); err != nil {
		return nil, err
	}
	_, ref := b.cfg.detectorRef()
	detector, _ := b.instances[ref].(scheduler.SaturationDetector) // checkDetector reported any other kind
	flow := b.plan(detector)
	if flow != nil {
		detector = nil // flow control queues sheddable requests instead of shedding them
	}
	if flow != nil && flow.Eviction && (flow.Detector == nil || flow.Detector.TypedName().Type != concurrencyDetector) {
		b.warnings = append(b.warnings, "flowControl.enableEviction: the saturation detector reads scraped metrics, so each "+
			"eviction waits for a scrape to show the capacity freed (refresh interval + staleness threshold + 250ms); "+
			"concurrency-detector sees it at once and is the recommended pairing")
	}
	sched, err := b.assemble(opts.Seed, opts.Timer, detector)
	if err != nil {
		return nil, fmt.Errorf("build config: %w", err)
	}
	b.inherit() // last: a failed build must leave the old instances as they were
	out := b.result(sched, hash)
	out.flow = flow
	return out, nil
}

// builder holds the state of one BuildWith call.
type builder struct {
	cfg       *Config
	reg       *scheduler.Registry
	h         *scheduler.Handle
	prev      *Built
	instances map[string]scheduler.Plugin
	tried     map[string]bool
	reused    map[string]bool
	heirs     map[string]bool
	ps        problems
	warnings  []string
}

func newBuilder(cfg *Config, opts BuildOptions) *builder {
	h := opts.Handle
	if h == nil {
		h = &scheduler.Handle{Log: logr.Discard(), Clock: scheduler.RealClock{}}
	}
	return &builder{
		cfg: cfg, reg: opts.Registry, h: h, prev: opts.Previous,
		instances: map[string]scheduler.Plugin{}, tried: map[string]bool{}, reused: map[string]bool{}, heirs: map[string]bool{},
	}
}

// kind is the kind of the instance called name (0 when it was not built).
func (b *builder) kind(name string) pluginKind {
	if p, ok := b.instances[name]; ok {
		return kindOf(p)
	}
	return 0
}

// instantiate builds every spec not tried yet; a duplicate name (already
// reported) is built once.
func (b *builder) instantiate() {
	for i, spec := range b.cfg.Plugins {
		if spec.Type == "" || b.tried[spec.Name] {
			continue
		}
		b.tried[spec.Name] = true
		reg, ok := b.reg.Lookup(spec.Type)
		if !ok {
			b.unregistered(i, spec)
			continue
		}
		if p := b.reusable(spec); p != nil {
			b.instances[spec.Name] = p
			b.reused[spec.Name] = true
			continue
		}
		p, err := b.create(reg, spec)
		if err != nil {
			b.ps.add(idx("plugins", i), "plugin %q of type %q: %v%s", spec.Name, spec.Type, err, manifests.BooleanHint(err))
			continue
		}
		b.instances[spec.Name] = p
	}
}

func (b *builder) unregistered(i int, spec PluginSpec) {
	msg := fmt.Sprintf("plugin type %q is not supported by OpenEPP", spec.Type)
	switch spec.origin {
	case fromOptionalDefault:
		b.warnings = append(b.warnings, fmt.Sprintf("plugins[%d]: default plugin %q not created: %s", i, spec.Name, msg))
	case fromDefault:
		b.ps.add(at(idx("plugins", i), "type"), "%s (it is added by default; register it)", msg)
	default:
		if why, ok := unsupportedTypes[spec.Type]; ok {
			b.ps.add(at(idx("plugins", i), "type"), "%s: %s", msg, why)
			return
		}
		b.ps.add(at(idx("plugins", i), "type"), "%s (known: %s)", msg, strings.Join(b.reg.Types(), ", "))
	}
}

// create runs a factory, turning a panic into an error so that bad
// parameters can never crash the EPP, and checks what it returned.
func (b *builder) create(reg scheduler.Registration, spec PluginSpec) (p scheduler.Plugin, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("factory panicked: %v", r)
		}
	}()
	h := *b.h
	h.Log = b.h.Log.WithValues("plugin", spec.Name)
	p, err = reg.Factory(spec.Name, spec.Parameters, &h)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, errors.New("factory returned no plugin")
	}
	if got := p.TypedName(); got.Name != spec.Name || got.Type != spec.Type {
		return nil, fmt.Errorf("factory returned a plugin named %q of type %q", got.Name, got.Type)
	}
	return p, nil
}

// resolve lets newly built resolvers find the instances they refer to.
func (b *builder) resolve() {
	all := make([]scheduler.Plugin, 0, len(b.instances))
	for _, spec := range b.cfg.Plugins {
		if p, ok := b.instances[spec.Name]; ok {
			all = append(all, p)
		}
	}
	h := b.h.WithPlugins(all...)
	for i, spec := range b.cfg.Plugins {
		r, ok := b.instances[spec.Name].(scheduler.Resolver)
		if !ok || b.reused[spec.Name] {
			continue
		}
		if err := r.Resolve(h); err != nil {
			b.ps.add(idx("plugins", i), "plugin %q: resolve: %v", spec.Name, err)
		}
	}
}

// assemble builds the profiles and the scheduler; validateKinds has made
// sure every lookup here succeeds.
func (b *builder) assemble(seed uint64, timer scheduler.PluginTimer, detector scheduler.SaturationDetector) (*scheduler.Scheduler, error) {
	var handler scheduler.ProfileHandler
	var all []scheduler.Plugin
	for _, spec := range b.cfg.Plugins {
		p, ok := b.instances[spec.Name]
		if !ok {
			continue
		}
		all = append(all, p)
		if h, ok := p.(scheduler.ProfileHandler); ok {
			handler = h
		}
	}
	profiles := make([]*scheduler.Profile, 0, len(b.cfg.SchedulingProfiles))
	for _, ps := range b.cfg.SchedulingProfiles {
		profiles = append(profiles, b.profile(ps))
	}
	return scheduler.New(scheduler.Options{Handler: handler, Profiles: profiles, Plugins: all,
		SaturationDetector: detector, Timer: timer, Seed: seed, Clock: b.h.Clock})
}

// profile places each entry by what it is: a plugin that is both a filter
// and a scorer takes both roles, as upstream does.
func (b *builder) profile(spec ProfileSpec) *scheduler.Profile {
	p := &scheduler.Profile{Name: spec.Name}
	for _, pp := range spec.Plugins {
		inst := b.instances[pp.PluginRef]
		if f, ok := inst.(scheduler.Filter); ok {
			p.Filters = append(p.Filters, f)
		}
		if s, ok := inst.(scheduler.Scorer); ok {
			p.Scorers = append(p.Scorers, scheduler.WeightedScorer{Scorer: s, Weight: deref(pp.Weight)})
		}
		if pk, ok := inst.(scheduler.Picker); ok {
			p.Picker = pk
		}
	}
	return p
}

func (b *builder) result(sched *scheduler.Scheduler, hash string) *Built {
	out := &Built{
		Config: b.cfg, Scheduler: sched, Warnings: b.warnings, Hash: hash,
		byName: b.instances, keys: map[string]string{}, reused: b.reused, heirs: b.heirs,
	}
	for _, spec := range b.cfg.Plugins {
		p, ok := b.instances[spec.Name]
		if !ok {
			continue
		}
		out.Plugins = append(out.Plugins, p)
		out.keys[spec.Name] = b.cfg.buildKey(spec)
		if r, ok := p.(scheduler.Runnable); ok {
			out.Runnables = append(out.Runnables, NamedRunnable{Name: spec.Name, Runnable: r})
		}
	}
	return out
}

// Plugin returns the instance called name.
func (b *Built) Plugin(name string) (scheduler.Plugin, bool) {
	p, ok := b.byName[name]
	return p, ok
}

// Discovery returns the endpoint discovery plugin dataLayer.discovery
// names, or nil when the config names none (endpoints then come from the
// EPP's flags).
func (b *Built) Discovery() scheduler.Discovery {
	d, _ := b.byName[b.Config.discoveryRef()].(scheduler.Discovery) // checkDiscovery refused any other kind
	return d
}

// Reused reports whether the instance called name was carried over from the
// previous build rather than built anew.
func (b *Built) Reused(name string) bool { return b.reused[name] }

// Instances returns b's plugins that implement T, in config order; the EPP
// uses it to find data sources, parsers or flow-control policies by the
// interface their owning package defines.
func Instances[T any](b *Built) []T {
	var out []T
	for _, p := range b.Plugins {
		if t, ok := p.(T); ok {
			out = append(out, t)
		}
	}
	return out
}
