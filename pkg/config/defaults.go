package config

import (
	"encoding/json"
	"slices"
)

// The plugin types upstream's defaulting adds. The loader names plugin types
// only here, and only for these documented upstream defaults.
const (
	defaultProfileName     = "default"
	singleProfileHandler   = "single-profile-handler"
	maxScorePicker         = "max-score-picker"
	metricsDataSource      = "metrics-data-source"
	coreMetricsExtractor   = "core-metrics-extractor"
	utilizationDetector    = "utilization-detector"
	concurrencyDetector    = "concurrency-detector"
	openAIParser           = "openai-parser"
	anthropicParser        = "anthropic-parser"
	vllmHTTPParser         = "vllmhttp-parser"
	sglangHTTPParser       = "sglanghttp-parser"
	fcfsOrderingPolicy     = "fcfs-ordering-policy"
	globalStrictFairness   = "global-strict-fairness-policy"
	staticUsageLimitPolicy = "static-usage-limit-policy"
	modelsResponder        = "models-responder"
	modelsDataSource       = "models-data-source"
	modelsDataExtractor    = "models-data-extractor"
	flowControlGate        = "flowControl"
	mmScorer               = "mm-embeddings-cache-scorer"
	mmProducer             = "mm-embeddings-cache-producer"
	p2pSourceProducer      = "p2p-source-producer"
	topologyExtractor      = "topology-extractor"
	weightDefault          = 1.0
)

// companion is an upstream auto-created plugin: when a plugin of type
// trigger is configured and none of the types in satisfiedBy is, a plugin of
// type add (named after its type) is created, with the trigger's parameters
// when shareParams is set (the producer and the scorer of GIE's prefix
// plugin took one parameter set) and with its defaults otherwise.
type companion struct {
	trigger     string
	add         string
	satisfiedBy []string
	shareParams bool
	// namedBy is the trigger's parameter naming the plugin it reads, when
	// it has one: a trigger naming another plugin than add needs no add.
	namedBy string
}

var prefixProducers = []string{"approx-prefix-cache-producer", "precise-prefix-cache-producer"}

var companions = append([]companion{{
	// As llm-d: a scorer that names no producer reads the approximate one,
	// created if absent, even beside a precise producer.
	trigger:     "prefix-cache-scorer",
	add:         "approx-prefix-cache-producer",
	satisfiedBy: []string{"approx-prefix-cache-producer"},
	shareParams: true,
	namedBy:     "prefixMatchInfoProducerName",
}, {
	// llm-d creates the producers a plugin reads when none is listed.
	trigger:     "prefix-cache-affinity-filter",
	add:         "approx-prefix-cache-producer",
	satisfiedBy: prefixProducers,
}, {
	trigger:     "prefix-cache-affinity-filter",
	add:         "inflight-load-producer",
	satisfiedBy: []string{"inflight-load-producer"},
}, {
	trigger:     "no-hit-lru-filter",
	add:         "approx-prefix-cache-producer",
	satisfiedBy: prefixProducers,
	namedBy:     "prefixMatchInfoProducerName",
}, {
	trigger:     "no-hit-lru-filter",
	add:         "inflight-load-producer",
	satisfiedBy: []string{"inflight-load-producer"},
	namedBy:     "inFlightLoadProducerName",
}, {
	// llm-d's multimodal scorer reads the config's producer, created if
	// absent; defaultReadNames names it in the scorer.
	trigger:     mmScorer,
	add:         mmProducer,
	satisfiedBy: []string{mmProducer},
	namedBy:     "producerName",
}, {
	// llm-d's P2P source reads a prefix producer; with none named and
	// none configured, the approximate one is created.
	trigger:     p2pSourceProducer,
	add:         "approx-prefix-cache-producer",
	satisfiedBy: prefixProducers,
	namedBy:     "prefixMatchInfoProducerName",
}, {
	// The topology-affinity plugins read an extractor, created if absent.
	trigger:     "topology-affinity-scorer",
	add:         topologyExtractor,
	satisfiedBy: []string{topologyExtractor},
	namedBy:     "topologyProducerName",
}, {
	trigger:     "topology-affinity-filter",
	add:         topologyExtractor,
	satisfiedBy: []string{topologyExtractor},
	namedBy:     "topologyProducerName",
}}, readersOf("predicted-latency-producer", "latency-scorer", "slo-headroom-tier-filter", "slo-deficit-bucket-filter", "latency-slo-admitter")...)

// readersOf are the companions giving each of the reader types a producer
// of type producer when none is configured.
func readersOf(producer string, readers ...string) []companion {
	out := make([]companion, len(readers))
	for i, r := range readers {
		// GIE v1.5.0's predicted-latency-scorer predicts too.
		out[i] = companion{trigger: r, add: producer, satisfiedBy: []string{producer, "predicted-latency-scorer"}}
	}
	return out
}

// applyDefaults is the one place defaults are applied, in upstream's order
// (reference §4.3 "Defaulting"):
//
//  1. a plugin's name defaults to its type;
//  2. no profiles: a "default" profile holds every filter, scorer and picker;
//  3. one profile and no profile handler: add single-profile-handler;
//  4. a profile without a picker gets max-score-picker;
//  5. a scorer's weight defaults to 1;
//  6. flow control: bands default to global-strict-fairness-policy and
//     fcfs-ordering-policy, usage limits to static-usage-limit-policy, and
//     these three always exist when flow control is configured;
//  7. the parser defaults to openai-parser (GIE), or to openai-parser,
//     anthropic-parser, vllmhttp-parser and sglanghttp-parser in an empty
//     requestHandler.parsers (llm-d's list, plus SGLang's); either way,
//     with no parser named, instances of the other three exist too, so
//     /v1/messages, /inference/v1/generate and /generate are parsed unless
//     a config names its parsers without them;
//  8. the saturation detector defaults to utilization-detector;
//  9. an absent dataLayer gets metrics-data-source + core-metrics-extractor
//     (a present one too when injectDefaults is in effect and it has no
//     metrics source; an explicit empty section disables collection);
//  10. a prefix-cache-scorer that names no other producer gets an
//     approx-prefix-cache-producer with the scorer's parameters, unless
//     one exists (a precise producer beside it does not count), and a
//     prefix-cache-affinity-filter gets the producers it reads (llm-d):
//     an approx-prefix-cache-producer and an inflight-load-producer;
//     an mm-embeddings-cache-scorer gets an mm-embeddings-cache-producer
//     unless one exists, and one naming no producer (producerName) is
//     made to name the config's only one (llm-d's reading of an empty
//     name; with several it stays empty and the scorer says to choose);
//     a p2p-source-producer likewise gets an approx-prefix-cache-producer
//     unless a prefix producer exists, and reads the only one when it
//     names none (prefixMatchInfoProducerName); the topology-affinity
//     scorer and filter get a topology-extractor, and read the only one
//     (topologyProducerName);
//  11. a models-responder needs model lists (llm-d): unless a
//     models-data-source is listed in dataLayer.sources, one is, the
//     declared one or else a new one, fed to a models-data-extractor (the
//     declared one or else a new one).
//
// Steps 2–5 depend on what the plugins are, which only building them tells;
// with a nil kinds function (Load) they are skipped, and Build runs
// applyDefaults again with kinds. Every step is idempotent.
func applyDefaults(cfg *Config, kinds func(name string) pluginKind) {
	for i := range cfg.Plugins {
		if cfg.Plugins[i].Name == "" {
			cfg.Plugins[i].Name = cfg.Plugins[i].Type
		}
	}
	if kinds != nil {
		defaultProfile(cfg, kinds)
		defaultHandler(cfg, kinds)
		defaultPickers(cfg, kinds)
		defaultWeights(cfg, kinds)
	}
	defaultFlowControl(cfg)
	defaultParser(cfg)
	defaultSaturationDetector(cfg)
	defaultDataLayer(cfg)
	defaultCompanions(cfg)
	defaultReadNames(cfg)
	defaultModelSource(cfg)
}

// ensure declares a plugin named typ of type typ unless a plugin of that
// name exists.
func ensure(cfg *Config, typ string, o origin) {
	if cfg.plugin(typ) == nil {
		cfg.Plugins = append(cfg.Plugins, PluginSpec{Name: typ, Type: typ, origin: o})
	}
}

func defaultProfile(cfg *Config, kinds func(string) pluginKind) {
	if len(cfg.SchedulingProfiles) > 0 {
		return
	}
	p := ProfileSpec{Name: defaultProfileName}
	for _, spec := range cfg.Plugins {
		// Plugins injected for other sections (a detector that can also
		// filter) are not the user's scheduling choice.
		if spec.origin != fromOptionalDefault && kinds(spec.Name).has(kindProfile) {
			p.Plugins = append(p.Plugins, ProfilePlugin{PluginRef: spec.Name})
		}
	}
	cfg.SchedulingProfiles = []ProfileSpec{p}
}

func defaultHandler(cfg *Config, kinds func(string) pluginKind) {
	if len(cfg.SchedulingProfiles) != 1 {
		return
	}
	for _, spec := range cfg.Plugins {
		if kinds(spec.Name).has(kindHandler) {
			return
		}
	}
	ensure(cfg, singleProfileHandler, fromDefault)
}

func defaultPickers(cfg *Config, kinds func(string) pluginKind) {
	for i := range cfg.SchedulingProfiles {
		p := &cfg.SchedulingProfiles[i]
		has := slices.ContainsFunc(p.Plugins, func(pp ProfilePlugin) bool {
			return kinds(pp.PluginRef).has(kindPicker) || pp.PluginRef == maxScorePicker
		})
		if has {
			continue
		}
		ensure(cfg, maxScorePicker, fromDefault)
		p.Plugins = append(p.Plugins, ProfilePlugin{PluginRef: maxScorePicker})
	}
}

func defaultWeights(cfg *Config, kinds func(string) pluginKind) {
	for i := range cfg.SchedulingProfiles {
		for j := range cfg.SchedulingProfiles[i].Plugins {
			pp := &cfg.SchedulingProfiles[i].Plugins[j]
			if pp.Weight == nil && kinds(pp.PluginRef).has(kindScorer) {
				w := weightDefault
				pp.Weight = &w
			}
		}
	}
}

func defaultFlowControl(cfg *Config) {
	fc := cfg.FlowControl
	if fc == nil && !cfg.FeatureEnabled(flowControlGate) {
		return
	}
	for _, typ := range []string{globalStrictFairness, fcfsOrderingPolicy, staticUsageLimitPolicy} {
		ensure(cfg, typ, fromOptionalDefault)
	}
	if fc == nil {
		return
	}
	if fc.UsageLimitPolicyPluginRef == "" {
		fc.UsageLimitPolicyPluginRef = staticUsageLimitPolicy
	}
	bands := []*PriorityBand{fc.DefaultPriorityBand, fc.DefaultNegativePriorityBand}
	for i := range fc.PriorityBands {
		bands = append(bands, &fc.PriorityBands[i])
	}
	for _, b := range bands {
		if b == nil {
			continue
		}
		if b.FairnessPolicyRef == "" {
			b.FairnessPolicyRef = globalStrictFairness
		}
		if b.OrderingPolicyRef == "" {
			b.OrderingPolicyRef = fcfsOrderingPolicy
		}
	}
}

func defaultParser(cfg *Config) {
	switch {
	case cfg.RequestHandler != nil && len(cfg.RequestHandler.Parsers) == 0:
		cfg.RequestHandler.Parsers = []PluginRef{{PluginRef: openAIParser}, {PluginRef: anthropicParser}, {PluginRef: vllmHTTPParser},
			{PluginRef: sglangHTTPParser}}
	case cfg.RequestHandler == nil && cfg.Parser == nil:
		cfg.Parser = &PluginRef{PluginRef: openAIParser}
	default:
		return
	}
	ensure(cfg, openAIParser, fromOptionalDefault)
	ensure(cfg, anthropicParser, fromOptionalDefault)
	ensure(cfg, vllmHTTPParser, fromOptionalDefault)
	ensure(cfg, sglangHTTPParser, fromOptionalDefault)
}

func defaultSaturationDetector(cfg *Config) {
	if cfg.SaturationDetector != nil || (cfg.FlowControl != nil && cfg.FlowControl.SaturationDetector != nil) {
		return
	}
	cfg.SaturationDetector = &PluginRef{PluginRef: utilizationDetector}
	ensure(cfg, utilizationDetector, fromOptionalDefault)
}

// defaultDataLayer injects the default metrics source when the section is
// absent, or present with injectDefaults in effect (see DataLayer), unless a
// metrics-data-source already feeds it.
func defaultDataLayer(cfg *Config) {
	if cfg.DataLayer == nil {
		cfg.DataLayer = &DataLayer{}
	} else if !cfg.DataLayer.injects(cfg.APIVersion) {
		return
	}
	for _, s := range cfg.DataLayer.Sources {
		if spec := cfg.plugin(s.PluginRef); spec != nil && spec.Type == metricsDataSource {
			return
		}
	}
	ensure(cfg, metricsDataSource, fromOptionalDefault)
	ensure(cfg, coreMetricsExtractor, fromOptionalDefault)
	cfg.DataLayer.Sources = append(cfg.DataLayer.Sources, DataSource{
		PluginRef:  metricsDataSource,
		Extractors: []PluginRef{{PluginRef: coreMetricsExtractor}},
	})
}

// injects reports whether defaults are added to a present section.
func (d *DataLayer) injects(apiVersion string) bool {
	if d.InjectDefaults != nil {
		return *d.InjectDefaults
	}
	return llmdFlavor(apiVersion)
}

func defaultCompanions(cfg *Config) {
	for _, c := range companions {
		i := slices.IndexFunc(cfg.Plugins, func(s PluginSpec) bool { return s.Type == c.trigger && c.reads(s) })
		if i < 0 {
			continue
		}
		satisfied := slices.ContainsFunc(cfg.Plugins, func(s PluginSpec) bool {
			return slices.Contains(c.satisfiedBy, s.Type)
		})
		if satisfied {
			continue
		}
		spec := PluginSpec{Name: c.add, Type: c.add, origin: fromDefault}
		if c.shareParams {
			spec.Parameters = slices.Clone(cfg.Plugins[i].Parameters)
		}
		cfg.Plugins = append(cfg.Plugins, spec)
	}
}

// reads reports whether trigger s reads the plugin c adds: it names no
// other.
func (c companion) reads(s PluginSpec) bool {
	if c.namedBy == "" || len(s.Parameters) == 0 {
		return true
	}
	var params map[string]json.RawMessage
	if json.Unmarshal(s.Parameters, &params) != nil {
		return true // the plugin's own decoding reports the problem
	}
	var name string
	if raw, ok := params[c.namedBy]; !ok || json.Unmarshal(raw, &name) != nil || name == "" {
		return true
	}
	return name == c.add
}

// readName is a plugin type whose parameter param names the plugin, of one
// of the types producers, it reads, and reads the config's only one when empty.
type readName struct {
	reader, param string
	producers     []string // the types it can read
}

var readNames = []readName{
	{reader: mmScorer, param: "producerName", producers: []string{mmProducer}},
	{reader: p2pSourceProducer, param: "prefixMatchInfoProducerName", producers: prefixProducers},
	{reader: "no-hit-lru-filter", param: "prefixMatchInfoProducerName", producers: prefixProducers},
	{reader: "topology-affinity-scorer", param: "topologyProducerName", producers: []string{topologyExtractor}},
	{reader: "topology-affinity-filter", param: "topologyProducerName", producers: []string{topologyExtractor}},
}

// defaultReadNames fills in a reader's empty name parameter when the
// config holds exactly one plugin of the type it reads, so the effective
// config shows what the reader reads.
func defaultReadNames(cfg *Config) {
	for _, rn := range readNames {
		var producers []string
		for _, s := range cfg.Plugins {
			if slices.Contains(rn.producers, s.Type) {
				producers = append(producers, s.Name)
			}
		}
		if len(producers) != 1 {
			continue
		}
		for i := range cfg.Plugins {
			if s := &cfg.Plugins[i]; s.Type == rn.reader {
				s.Parameters = withName(s.Parameters, rn.param, producers[0])
			}
		}
	}
}

// withName returns raw with key set to name unless raw names something
// there already; parameters that are not a JSON object are left for the
// plugin's own decoding to report.
func withName(raw json.RawMessage, key, name string) json.RawMessage {
	params := map[string]json.RawMessage{}
	if len(raw) > 0 && string(raw) != "null" && json.Unmarshal(raw, &params) != nil {
		return raw
	}
	var have string
	if v, ok := params[key]; ok && (json.Unmarshal(v, &have) != nil || have != "") {
		return raw
	}
	params[key], _ = json.Marshal(name)
	out, err := json.Marshal(params)
	if err != nil {
		return raw
	}
	return out
}

// defaultModelSource gives a models-responder the model lists it answers
// from (step 11). A listed models-data-source without an extractor gets
// one too, since it would collect nothing.
func defaultModelSource(cfg *Config) {
	if !slices.ContainsFunc(cfg.Plugins, func(s PluginSpec) bool { return s.Type == modelsResponder }) {
		return
	}
	ensureModelSource(cfg)
}

// ensureModelSource makes sure a models-data-source feeds a
// models-data-extractor: the declared ones, or new ones.
func ensureModelSource(cfg *Config) {
	if cfg.DataLayer == nil {
		cfg.DataLayer = &DataLayer{}
	}
	for i, s := range cfg.DataLayer.Sources {
		if spec := cfg.plugin(s.PluginRef); spec == nil || spec.Type != modelsDataSource {
			continue
		}
		if len(s.Extractors) == 0 {
			cfg.DataLayer.Sources[i].Extractors = []PluginRef{{PluginRef: firstOfType(cfg, modelsDataExtractor)}}
		}
		return
	}
	src := firstOfType(cfg, modelsDataSource)
	cfg.DataLayer.Sources = append(cfg.DataLayer.Sources, DataSource{
		PluginRef:  src,
		Extractors: []PluginRef{{PluginRef: firstOfType(cfg, modelsDataExtractor)}},
	})
}

// firstOfType is the name of the first plugin of type typ, declaring one
// named typ when there is none.
func firstOfType(cfg *Config, typ string) string {
	if i := slices.IndexFunc(cfg.Plugins, func(s PluginSpec) bool { return s.Type == typ }); i >= 0 {
		return cfg.Plugins[i].Name
	}
	ensure(cfg, typ, fromDefault)
	return typ
}
