package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/openepp/openepp/pkg/pdsidecar"
	"github.com/openepp/openepp/pkg/sim"
	"github.com/openepp/openepp/pkg/sim/engine"
)

// options are the parsed command line.
type options struct {
	base      sim.Config
	instances int
	verbosity int
	// pdSidecar puts a P/D decode sidecar configured by pd in front of
	// every instance, on the instance's port.
	pdSidecar bool
	pd        pdsidecar.Options
	// kvEvents is where instances publish their KV events (vLLM's
	// --kv-events-config), "" for nowhere; kvEventsBind binds it instead
	// of connecting to it.
	kvEvents     string
	kvEventsBind bool
}

// listFlag collects repeated and comma-separated values.
type listFlag struct{ values *[]string }

func (l listFlag) String() string {
	if l.values == nil {
		return ""
	}
	return strings.Join(*l.values, ",")
}

func (l listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l.values = append(*l.values, v)
		}
	}
	return nil
}

// loraFlag accepts vLLM's and llm-d-inference-sim's --lora-modules forms:
// "name", "name=path", a JSON object {"name": ...} or a JSON list of them,
// repeated or comma separated (outside JSON).
type loraFlag struct{ names *[]string }

func (l loraFlag) String() string { return listFlag{l.names}.String() }

func (l loraFlag) Set(s string) error {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "{") || strings.HasPrefix(s, "[") {
		var mods []struct {
			Name string `json:"name"`
		}
		data := s
		if strings.HasPrefix(s, "{") {
			data = "[" + s + "]"
		}
		if err := json.Unmarshal([]byte(data), &mods); err != nil {
			return fmt.Errorf("lora module JSON: %w", err)
		}
		for _, m := range mods {
			if m.Name == "" {
				return errors.New("lora module JSON: missing name")
			}
			*l.names = append(*l.names, m.Name)
		}
		return nil
	}
	for _, v := range strings.Split(s, ",") {
		name, _, _ := strings.Cut(strings.TrimSpace(v), "=")
		if name != "" {
			*l.names = append(*l.names, name)
		}
	}
	return nil
}

// durationFlag is a duration that is nil until set. A bare number is
// milliseconds (llm-d-inference-sim's unit); otherwise Go syntax ("250us").
type durationFlag struct{ dst **time.Duration }

func (d durationFlag) String() string {
	if d.dst == nil || *d.dst == nil {
		return ""
	}
	return (**d.dst).String()
}

func (d durationFlag) Set(s string) error {
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d.dst = &v
	return nil
}

func parseDuration(s string) (time.Duration, error) {
	if ms, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(ms * float64(time.Millisecond)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is neither milliseconds nor a Go duration", s)
	}
	return d, nil
}

// floatFlag is a float that is nil until set.
type floatFlag struct{ dst **float64 }

func (f floatFlag) String() string {
	if f.dst == nil || *f.dst == nil {
		return ""
	}
	return strconv.FormatFloat(**f.dst, 'g', -1, 64)
}

func (f floatFlag) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("%q is not a number", s)
	}
	*f.dst = &v
	return nil
}

// parseFlags parses args (without the program name).
func parseFlags(args []string, stderr io.Writer) (options, error) {
	o := options{base: sim.Config{Port: 8000}, instances: 1}
	c := &o.base
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Address, "address", "127.0.0.1", "IP address to listen on")
	fs.IntVar(&c.Port, "port", 8000, "port of the first instance; instance k listens on port+k (0: any free port)")
	fs.IntVar(&o.instances, "instances", 1, "number of simulated servers, each with its own engine")
	fs.StringVar(&c.Model, "model", "", "base model name (default: the profile's)")
	fs.Var(listFlag{&c.ServedModelNames}, "served-model-name", "names clients may use for the base model (repeatable, comma list)")
	fs.Var(loraFlag{&c.LoRAs}, "lora-modules", `LoRA adapters: name, name=path or {"name":...} (repeatable, comma list)`)
	fs.Var(listFlag{&c.PinnedLoRAs}, "pinned-loras", "adapters of --lora-modules held in GPU slots from the start and never evicted (repeatable, comma list; at most --max-loras)")
	fs.StringVar(&c.Profile, "profile", engine.DefaultProfile, "engine preset: "+strings.Join(engine.ProfileNames(), ", "))
	fs.StringVar(&c.MetricsEngine, "metrics-engine", sim.EngineVLLM, "metric names to export: "+strings.Join(sim.MetricsEngines(), ", "))
	fs.StringVar(&c.SchedulingPolicy, "scheduling-policy", engine.FCFS.String(), `fcfs, or priority: a lower request "priority" starts first and is preempted last (negated under --metrics-engine sglang)`)
	fs.IntVar(&c.DefaultMaxTokens, "default-max-tokens", 16, "max tokens when a request sets none")
	fs.Uint64Var(&c.Seed, "seed", 0, "seed for latency jitter and generated text (instance k uses seed+k)")
	fs.IntVar(&o.verbosity, "v", 0, "log verbosity (0 lifecycle, 1 decisions, 2 detail)")
	capacityFlags(fs, &c.Capacity)
	latencyFlags(fs, &c.Latency)
	faultFlags(fs, &c.Faults)
	pdFlags(fs, &o)
	fs.StringVar(&o.kvEvents, "kv-events-endpoint", "", "publish KV-cache events over ZeroMQ as vLLM does, under topic kv@<host:port>@<model>: "+
		"connect to this address, where an EPP's precise-prefix-cache-producer binds (e.g. tcp://127.0.0.1:5557); empty: no events")
	fs.BoolVar(&o.kvEventsBind, "kv-events-bind", false, "bind --kv-events-endpoint instead of connecting (the EPP then connects to each server); one instance only")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	var pdSet []string
	fs.Visit(func(f *flag.Flag) {
		if (strings.HasPrefix(f.Name, "pd-") || f.Name == "p2p-connector-port") && f.Name != "pd-sidecar" {
			pdSet = append(pdSet, "--"+f.Name)
		}
	})
	if !o.pdSidecar && len(pdSet) > 0 {
		return o, fmt.Errorf("%s need --pd-sidecar", strings.Join(pdSet, ", "))
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if o.kvEventsBind && (o.kvEvents == "" || o.instances > 1) {
		return o, errors.New("--kv-events-bind needs --kv-events-endpoint and one instance (each would bind the same address)")
	}
	if o.instances < 1 {
		return o, fmt.Errorf("--instances must be ≥ 1, got %d", o.instances)
	}
	if c.Port != 0 && c.Port+o.instances-1 > 65535 {
		return o, fmt.Errorf("--port %d + --instances %d exceeds 65535", c.Port, o.instances)
	}
	return o, nil
}

func capacityFlags(fs *flag.FlagSet, c *sim.Capacity) {
	fs.IntVar(&c.MaxNumSeqs, "max-num-seqs", 0, "max running sequences (default: the profile's)")
	fs.IntVar(&c.MaxNumBatchedTokens, "max-num-batched-tokens", 0, "per-iteration token budget (default: the profile's)")
	fs.IntVar(&c.KVCacheBlocks, "kv-cache-blocks", 0, "KV cache size in blocks (default: the profile's)")
	fs.IntVar(&c.KVCacheBlocks, "kv-cache-size", 0, "alias of --kv-cache-blocks")
	fs.IntVar(&c.BlockSize, "block-size", 0, "tokens per KV block (default: the profile's)")
	fs.IntVar(&c.MaxLoRAs, "max-loras", 0, "LoRA adapter slots (default: the profile's, 1)")
	fs.IntVar(&c.MaxCPULoRAs, "max-cpu-loras", 0, "host (CPU) cache of LoRA adapters, ≥ --max-loras; when set, --lora-modules load into it at start (default: same as --max-loras)")
	fs.IntVar(&c.MaxModelLen, "max-model-len", 0, "max prompt + output tokens (default: the profile's)")
	fs.IntVar(&c.MaxWaiting, "max-waiting-queue-length", 0, "waiting requests beyond which requests get 429 (default: unbounded)")
	fs.IntVar(&c.EncoderCacheTokens, "encoder-cache-tokens", 0, "multimodal encoder cache, in placeholder tokens (an image is 64); 0: none")
}

func latencyFlags(fs *flag.FlagSet, l *sim.Latency) {
	fs.Var(durationFlag{&l.TimeToFirstToken}, "time-to-first-token", "unloaded TTFT; without per-token cost TTFT is constant (ms or Go duration)")
	fs.Var(durationFlag{&l.InterTokenLatency}, "inter-token-latency", "base iteration time, i.e. ITL at batch 1 (ms or Go duration)")
	fs.Var(durationFlag{&l.PrefillOverhead}, "prefill-overhead", "unloaded TTFT excluding per-token cost (ms or Go duration)")
	fs.Var(durationFlag{&l.PrefillTimePerToken}, "prefill-time-per-token", "cost per uncached prompt token (ms or Go duration, e.g. 250us)")
	fs.Var(floatFlag{&l.TimeFactorUnderLoad}, "time-factor-under-load", "iteration time multiplier reached at max-num-seqs (≥ 1)")
	fs.Var(durationFlag{&l.LoRALoadDelay}, "lora-load-delay", "time to load a LoRA adapter from disk into the host cache (ms or Go duration)")
	fs.Var(durationFlag{&l.LoRAActivateDelay}, "lora-activate-delay", "time to move a LoRA adapter from the host cache into a GPU slot (ms or Go duration; default 0)")
	fs.Var(floatFlag{&l.Jitter}, "jitter", "relative std-dev of iteration times, 0..0.3")
	fs.Var(durationFlag{&l.KVTransferPerToken}, "kv-transfer-time-per-token", "P/D: cost of pulling one prompt token's KV from a prefiller (ms or Go duration; default 1us)")
	fs.Var(durationFlag{&l.KVTransferOverhead}, "kv-transfer-overhead", "P/D: fixed cost of each KV pull from a prefiller (ms or Go duration; default 0)")
	fs.Var(durationFlag{&l.EncodeTimePerToken}, "encode-time-per-token", "cost of encoding a multimodal item per placeholder token, unless the prefix or encoder cache holds it (ms or Go duration; default 0: free)")
}

func pdFlags(fs *flag.FlagSet, o *options) {
	fs.BoolVar(&o.pdSidecar, "pd-sidecar", false, "put a P/D decode sidecar in front of every instance, on its port: requests with "+
		pdsidecar.PrefillerHeader+" run their prefill there first")
	fs.Var(listFlag{&o.pd.AllowedPrefillers}, "pd-allowed-prefillers", "prefillers the sidecar may call: CIDRs, IPs or host:port (repeatable, comma list; default all)")
	fs.DurationVar(&o.pd.PrefillTimeout, "pd-prefill-timeout", pdsidecar.DefaultPrefillTimeout, "bound on a prefill call; beyond it the request is decoded with a local prefill")
	fs.IntVar(&o.pd.P2PConnectorPort, "p2p-connector-port", 0, "remote_port of the p2p block a request naming "+pdsidecar.KVSourceHeader+
		" gets, as llm-d's sidecar flag (0: the header's port, since instances here share a host)")
}

func faultFlags(fs *flag.FlagSet, f *sim.Faults) {
	fs.DurationVar(&f.MetricsDelay, "fault-metrics-delay", 0, "delay every metrics response")
	fs.BoolVar(&f.MetricsHang, "fault-metrics-hang", false, "never answer metrics requests")
	fs.IntVar(&f.MetricsStatus, "fault-metrics-status", 0, "answer metrics requests with this HTTP status (400-599)")
	fs.BoolVar(&f.MetricsGarbage, "fault-metrics-garbage", false, "serve a metrics page that is not Prometheus text")
	fs.Func("fault-refuse-for", "refuse connections for this long after start", func(s string) error {
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		f.RefuseConnections, f.RefuseFor = d > 0, d
		return nil
	})
	fs.IntVar(&f.DieAfterTokens, "fault-die-after-tokens", 0, "close completion connections after this many tokens")
	fs.IntVar(&f.CompletionsStatus, "fault-completions-status", 0, "fail completions with this HTTP status (400-599)")
}

// configs returns one config per instance.
func (o options) configs() []sim.Config {
	out := make([]sim.Config, o.instances)
	for k := range out {
		c := o.base
		if c.Port != 0 {
			c.Port += k
		}
		c.Seed += uint64(k)
		out[k] = c
	}
	return out
}
