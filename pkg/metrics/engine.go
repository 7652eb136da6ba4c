package metrics

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Engine names of the built-in mappings, as used in the engine-type label.
const (
	EngineVLLM              = "vllm"
	EngineSGLang            = "sglang"
	EngineAtom              = "atom"
	EngineTRTLLMServe       = "trtllm-serve"
	EngineTritonTensorRTLLM = "triton-tensorrt-llm"
	// EngineTriton is Triton Inference Server serving classic (non-LLM)
	// models: queue and executions only.
	EngineTriton = "triton"
)

// Pod labels that choose an endpoint's engine, in lookup order (GIE's, then
// llm-d's); an explicit EngineLabelKey is consulted before both.
const (
	EngineLabelGIE  = "inference.networking.k8s.io/engine-type"
	EngineLabelLLMD = "llm-d.ai/engine-type"
)

// reservedEngineName is upstream's alias for the default mapping; a config
// entry may not take it.
const reservedEngineName = "default"

// Default label names carrying the cache geometry on an info-style gauge.
const (
	defaultBlockSizeLabel = "block_size"
	defaultNumBlocksLabel = "num_gpu_blocks"
)

// EngineConfig names the metrics one model-server engine exposes. Each *Spec
// is a selector (see ParseSelector); "" disables that field. The JSON names
// are those of upstream's core-metrics-extractor `engineConfigs` entries, so
// upstream config files decode as is. An entry fully replaces a built-in
// engine of the same name: fields left empty stay disabled.
type EngineConfig struct {
	Name                string `json:"name"`
	QueuedRequestsSpec  string `json:"queuedRequestsSpec"`
	RunningRequestsSpec string `json:"runningRequestsSpec"`
	KVUsageSpec         string `json:"kvUsageSpec"`
	// LoRASpec selects vLLM-style info series carrying running_lora_adapters,
	// waiting_lora_adapters and max_lora labels; the series with the largest
	// value (a timestamp) wins.
	LoRASpec string `json:"loraSpec"`
	// CacheInfoSpec selects an info-style series carrying the cache geometry
	// as labels, named by CacheBlockSizeLabelName (default "block_size") and
	// CacheNumBlocksLabelName (default "num_gpu_blocks").
	CacheInfoSpec           string `json:"cacheInfoSpec"`
	CacheBlockSizeLabelName string `json:"cacheBlockSizeLabelName,omitempty"`
	CacheNumBlocksLabelName string `json:"cacheNumBlocksLabelName,omitempty"`
	// CacheBlockSizeSpec and CacheNumBlocksSpec read the geometry from
	// gauges instead; when set they take precedence over CacheInfoSpec.
	CacheBlockSizeSpec string `json:"cacheBlockSizeSpec,omitempty"`
	CacheNumBlocksSpec string `json:"cacheNumBlocksSpec,omitempty"`
	// MetricsPath (an OpenEPP extension) overrides Options.Path for
	// endpoints of this engine, e.g. "/prometheus/metrics" for trtllm-serve.
	MetricsPath string `json:"metricsPath,omitempty"`
	// CustomMetrics publish further series as endpoint attributes.
	CustomMetrics []CustomMetric `json:"customMetrics,omitempty"`
	// LoRALoadedSpec selects per-adapter residency series (vLLM's
	// lora_adapter_loaded: labels adapter_name, level gpu|cpu, pinned; value
	// 1 while resident), LoRAGPULoadedSpec the count of adapters in GPU slots
	// (its model_name label names the base model), LoRAGPUSlotsSpec the GPU
	// slots (overriding loraSpec's max_lora label), as llm-d names them.
	// Servers without these families report no residency; that is not an
	// error.
	LoRALoadedSpec    string `json:"loraLoadedSpec,omitempty"`
	LoRAGPULoadedSpec string `json:"loraGPULoadedSpec,omitempty"`
	LoRAGPUSlotsSpec  string `json:"loraGPUSlotsSpec,omitempty"`
	// LoRALoadSecondsSpec (an OpenEPP name; llm-d reads the same vLLM
	// family) selects a histogram of adapter transitions labelled
	// transition=load|activate, whose means price misses in
	// lora-load-state-scorer's loadHorizonSeconds.
	LoRALoadSecondsSpec string `json:"loraLoadSecondsSpec,omitempty"`
}

// ExtractorParams is the `parameters` block of upstream's
// core-metrics-extractor plugin. Decode it with DecodeExtractorParams and copy
// it into Options with Apply.
type ExtractorParams struct {
	EngineLabelKey string         `json:"engineLabelKey,omitempty"`
	DefaultEngine  string         `json:"defaultEngine,omitempty"`
	EngineConfigs  []EngineConfig `json:"engineConfigs,omitempty"`
}

// DecodeExtractorParams strictly decodes a JSON or YAML parameters block:
// unknown or duplicate fields are errors, so a typo never silently disables
// a metric.
func DecodeExtractorParams(data []byte) (ExtractorParams, error) {
	var p ExtractorParams
	if err := yaml.UnmarshalStrict(data, &p); err != nil {
		return ExtractorParams{}, fmt.Errorf("decode core-metrics-extractor parameters: %w", err)
	}
	return p, nil
}

// Apply copies the parameters into o (only the fields that are set).
func (p ExtractorParams) Apply(o *Options) {
	if p.EngineLabelKey != "" {
		o.EngineLabelKey = p.EngineLabelKey
	}
	if p.DefaultEngine != "" {
		o.DefaultEngine = p.DefaultEngine
	}
	o.Engines = append(o.Engines, p.EngineConfigs...)
}

// BuiltinEngines returns the built-in mappings (a fresh copy), with the
// metric names model servers publish (GIE/llm-d defaults).
func BuiltinEngines() []EngineConfig {
	return []EngineConfig{
		{
			Name:                EngineVLLM,
			QueuedRequestsSpec:  "vllm:num_requests_waiting",
			RunningRequestsSpec: "vllm:num_requests_running",
			KVUsageSpec:         "vllm:kv_cache_usage_perc",
			LoRASpec:            "vllm:lora_requests_info",
			CacheInfoSpec:       "vllm:cache_config_info",
			LoRALoadedSpec:      "vllm:lora_adapter_loaded",
			LoRAGPULoadedSpec:   "vllm:num_gpu_loaded_lora_adapters",
			LoRAGPUSlotsSpec:    "vllm:max_gpu_lora_adapters",
			LoRALoadSecondsSpec: "vllm:lora_adapter_load_seconds",
		},
		{
			// Older SGLang gives the geometry as cache_config_info labels,
			// newer as two gauges (llm-d reads those); either suffices.
			Name:                    EngineSGLang,
			QueuedRequestsSpec:      "sglang:num_queue_reqs",
			RunningRequestsSpec:     "sglang:num_running_reqs",
			KVUsageSpec:             "sglang:token_usage",
			CacheInfoSpec:           "sglang:cache_config_info",
			CacheBlockSizeLabelName: "page_size",
			CacheNumBlocksLabelName: "num_pages",
			CacheBlockSizeSpec:      "sglang:page_size",
			CacheNumBlocksSpec:      "sglang:num_pages",
		},
		{
			Name:                EngineAtom,
			QueuedRequestsSpec:  "atom:requests_waiting",
			RunningRequestsSpec: "atom:requests_running",
			KVUsageSpec:         "atom:kv_cache_usage_ratio",
			CacheInfoSpec:       "atom:cache_config_info",
		},
		{
			Name:                EngineTRTLLMServe,
			QueuedRequestsSpec:  "trtllm_num_requests_waiting",
			RunningRequestsSpec: "trtllm_num_requests_running",
			KVUsageSpec:         "trtllm_kv_cache_utilization",
			CacheBlockSizeSpec:  "trtllm_kv_cache_tokens_per_block",
			CacheNumBlocksSpec:  "trtllm_kv_cache_max_blocks",
			MetricsPath:         "/prometheus/metrics",
		},
		{
			Name:                EngineTritonTensorRTLLM,
			QueuedRequestsSpec:  "nv_trt_llm_request_metrics{request_type=waiting}",
			RunningRequestsSpec: "nv_trt_llm_request_metrics{request_type=scheduled}",
			KVUsageSpec:         "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=fraction}",
			CacheBlockSizeSpec:  "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=tokens_per}",
			CacheNumBlocksSpec:  "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=max}",
		},
		{
			// As llm-d maps it; its "running" is Triton's cumulative
			// execution counter, so only the queue is a load signal.
			Name:                EngineTriton,
			QueuedRequestsSpec:  "nv_inference_pending_request_count",
			RunningRequestsSpec: "nv_inference_exec_count",
		},
	}
}

// field indexes the per-engine metric specs.
type field int

const (
	fieldQueue field = iota
	fieldRunning
	fieldKVUsage
	fieldLoRA
	fieldCacheInfo
	fieldBlockSize
	fieldNumBlocks
	fieldLoRALoaded
	fieldLoRAGPULoaded
	fieldLoRAGPUSlots
	fieldLoRALoadSeconds
	numFields
)

// residencyFields are read by readResidency; a page without their families
// reports no residency rather than failing.
const residencyFields = fieldSet(1<<fieldLoRALoaded | 1<<fieldLoRAGPULoaded | 1<<fieldLoRAGPUSlots | 1<<fieldLoRALoadSeconds)

var fieldNames = [numFields]string{
	"queuedRequests", "runningRequests", "kvUsage", "lora", "cacheInfo", "cacheBlockSize", "cacheNumBlocks",
	"loraLoaded", "loraGPULoaded", "loraGPUSlots", "loraLoadSeconds",
}

func (f field) String() string { return fieldNames[f] }

// fieldSet is a bit set of fields, used to log missing metrics on change only.
type fieldSet uint16

func (s fieldSet) names() []string {
	var out []string
	for f := range numFields {
		if s&(1<<f) != 0 {
			out = append(out, f.String())
		}
	}
	return out
}

// engine is a compiled EngineConfig.
type engine struct {
	name           string
	path           string // "" means Options.Path
	specs          [numFields]*Selector
	blockSizeLabel string
	numBlocksLabel string
	// families are the distinct family names the specs read: the only lines
	// of a page worth handing to the parser.
	families []string
	enabled  fieldSet
	custom   []customMetric
}

// compileEngine parses every spec of c; errors are prefixed with path (the
// entry's place in the config) so all problems can be reported at once.
func compileEngine(path string, c EngineConfig) (*engine, error) {
	var errs []error
	e := &engine{
		name:           c.Name,
		path:           c.MetricsPath,
		blockSizeLabel: cmp.Or(c.CacheBlockSizeLabelName, defaultBlockSizeLabel),
		numBlocksLabel: cmp.Or(c.CacheNumBlocksLabelName, defaultNumBlocksLabel),
	}
	specs := [numFields]struct{ json, spec string }{
		{"queuedRequestsSpec", c.QueuedRequestsSpec}, {"runningRequestsSpec", c.RunningRequestsSpec},
		{"kvUsageSpec", c.KVUsageSpec}, {"loraSpec", c.LoRASpec}, {"cacheInfoSpec", c.CacheInfoSpec},
		{"cacheBlockSizeSpec", c.CacheBlockSizeSpec}, {"cacheNumBlocksSpec", c.CacheNumBlocksSpec},
		{"loraLoadedSpec", c.LoRALoadedSpec}, {"loraGPULoadedSpec", c.LoRAGPULoadedSpec},
		{"loraGPUSlotsSpec", c.LoRAGPUSlotsSpec}, {"loraLoadSecondsSpec", c.LoRALoadSecondsSpec},
	}
	for f, s := range specs {
		if strings.TrimSpace(s.spec) == "" {
			continue
		}
		sel, err := ParseSelector(s.spec)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.%s: %w", path, s.json, err))
			continue
		}
		e.specs[f] = sel
		e.enabled |= 1 << f
		if !slices.Contains(e.families, sel.Name) {
			e.families = append(e.families, sel.Name)
		}
	}
	for _, l := range []struct{ json, value string }{
		{"cacheBlockSizeLabelName", c.CacheBlockSizeLabelName},
		{"cacheNumBlocksLabelName", c.CacheNumBlocksLabelName},
	} {
		if l.value != "" && !validLabelName(l.value) {
			errs = append(errs, fmt.Errorf("%s.%s: invalid label name %q", path, l.json, l.value))
		}
	}
	if c.MetricsPath != "" && !strings.HasPrefix(c.MetricsPath, "/") {
		errs = append(errs, fmt.Errorf("%s.metricsPath: %q must start with '/'", path, c.MetricsPath))
	}
	custom, err := compileCustom(path, c.CustomMetrics)
	errs = append(errs, err)
	e.custom = custom
	e.addFamilies(custom)
	return e, errors.Join(errs...)
}

// nothingRead reports whether a page gave none of the fields a server must
// publish: every enabled one failed, the optional residency families aside.
func (e *engine) nothingRead(failed fieldSet) bool {
	required := e.enabled &^ residencyFields
	return required != 0 && failed&required == required
}

// engineSet resolves an endpoint's engine by label.
type engineSet struct {
	byName    map[string]*engine
	def       *engine
	labelKeys []string
}

// buildEngines merges configs over the built-ins (an entry replaces a
// built-in of the same name, new names add engines) and compiles them,
// reporting every problem at once with its path.
func buildEngines(configs []EngineConfig, defaultEngine, labelKey string) (*engineSet, error) {
	var errs []error
	set := &engineSet{byName: map[string]*engine{}, labelKeys: engineLabelKeys(labelKey)}
	for i, c := range configs {
		path := fmt.Sprintf("engineConfigs[%d]", i)
		switch {
		case c.Name == "":
			errs = append(errs, fmt.Errorf("%s.name: must not be empty", path))
		case c.Name == reservedEngineName:
			errs = append(errs, fmt.Errorf("%s.name: %q is reserved", path, c.Name))
		case set.byName[c.Name] != nil:
			errs = append(errs, fmt.Errorf("%s.name: duplicate engine %q", path, c.Name))
		}
		e, err := compileEngine(path, c)
		errs = append(errs, err)
		if set.byName[c.Name] == nil {
			set.byName[c.Name] = e
		}
	}
	for _, b := range BuiltinEngines() {
		if set.byName[b.Name] != nil {
			continue // replaced by a config entry
		}
		e, err := compileEngine("builtin "+b.Name, b)
		errs = append(errs, err)
		set.byName[b.Name] = e
	}
	if set.def = set.byName[defaultEngine]; set.def == nil || defaultEngine == reservedEngineName || defaultEngine == "" {
		errs = append(errs, fmt.Errorf("defaultEngine: %q is not a configured engine", defaultEngine))
	}
	return set, errors.Join(errs...)
}

func engineLabelKeys(explicit string) []string {
	keys := []string{EngineLabelGIE, EngineLabelLLMD}
	if explicit != "" && !slices.Contains(keys, explicit) {
		keys = append([]string{explicit}, keys...)
	}
	return keys
}

// resolve returns the engine for labels and the requested name when it is
// unknown (so the caller can report it); unlabeled endpoints get the default.
func (s *engineSet) resolve(labels map[string]string) (e *engine, unknown string) {
	for _, k := range s.labelKeys {
		name := labels[k]
		if name == "" {
			continue
		}
		if e := s.byName[name]; e != nil {
			return e, ""
		}
		return s.def, name
	}
	return s.def, ""
}

// EngineNamer returns how the scraper names an endpoint's engine from its
// labels under o: the first engine-type label set (o.EngineLabelKey, GIE's,
// llm-d's) when it names a configured or built-in engine, else
// o.DefaultEngine (vLLM when unset). Other parts of the EPP that depend on
// the engine (the priority convention) use it to agree with the metrics.
func EngineNamer(o Options) func(labels map[string]string) string {
	known := map[string]bool{}
	for _, c := range BuiltinEngines() {
		known[c.Name] = true
	}
	for _, c := range o.Engines {
		known[c.Name] = true
	}
	def := cmp.Or(o.DefaultEngine, EngineVLLM)
	keys := engineLabelKeys(o.EngineLabelKey)
	return func(labels map[string]string) string {
		for _, k := range keys {
			if name := labels[k]; name != "" {
				if known[name] {
					return name
				}
				return def
			}
		}
		return def
	}
}
