package epp

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/plugins"
	"github.com/openepp/openepp/pkg/request"
	"github.com/openepp/openepp/pkg/scheduler"
)

// costFlags are the options of `epp cost`.
type costFlags struct {
	configFile, compare  string
	endpoints, promptKiB int
	duration             time.Duration
}

func (f *costFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.configFile, "config", "", "EndpointPickerConfig to measure (default: the upstream default config)")
	fs.StringVar(&f.compare, "compare", "", "baseline config file (default: the upstream default config)")
	fs.IntVar(&f.endpoints, "endpoints", 100, "simulated endpoints")
	fs.IntVar(&f.promptKiB, "prompt-kib", 1, "prompt size in KiB")
	fs.DurationVar(&f.duration, "duration", 4*time.Second, "measuring time, split between the two configs")
}

// CostMain runs `epp cost` with args and exits non-zero on error.
func CostMain(args []string, opts ...Option) {
	runSubcommand("cost", func(ctx context.Context) error { return Cost(ctx, args, os.Stdout, opts...) })
}

// Cost measures what a scheduler config costs per routing decision, in
// process: the config is built with OpenEPP's plugins (plus any given by
// WithPlugins) over simulated endpoints with varied fresh metrics, and
// decisions (state, Schedule, PreRequest, ResponseComplete, as the server
// runs them) on chat prompts that share system prompts in groups are timed
// against a baseline config's, the two alternating in slices so that the
// machine's drift hits both.
func Cost(ctx context.Context, args []string, stdout io.Writer, opts ...Option) error {
	st := optionsOf(opts)
	var f costFlags
	ok, err := parseSubcommand("cost", "Times a scheduler config's routing decisions in process against a baseline config's on the same\n"+
		"requests and endpoints. Data sources are not started and nothing is scraped: plugins that need\n"+
		"a server (a tokenizer, KV events) decide without it.", args, stdout, f.bind)
	if !ok {
		return err
	}
	if f.endpoints < 1 || f.promptKiB < 1 || f.duration <= 0 {
		return fmt.Errorf("--endpoints and --prompt-kib must be >= 1 and --duration > 0")
	}
	registry, err := plugins.InTree(st.plugins...)
	if err != nil {
		return err
	}
	eps := costEndpoints(f.endpoints)
	arms := make([]*costArm, 2)
	for i, file := range []string{f.configFile, f.compare} {
		if arms[i], err = newCostArm(registry, file, eps); err != nil {
			return err
		}
	}
	reqs := costRequests(64, f.promptKiB<<10)
	for _, a := range arms { // warm the prefix index and the books
		for i := range 4 * len(reqs) {
			if err := a.decide(ctx, reqs[i%len(reqs)], eps); err != nil {
				return fmt.Errorf("%s: %w", a.name, err)
			}
		}
	}
	slice := max(f.duration/40, 10*time.Millisecond)
	for end := time.Now().Add(f.duration); time.Now().Before(end); {
		for _, a := range arms {
			if err := a.run(ctx, reqs, eps, slice); err != nil {
				return fmt.Errorf("%s: %w", a.name, err)
			}
		}
	}
	return writeCost(stdout, arms, f)
}

// costArm is one config under measurement and what it measured.
type costArm struct {
	name      string
	sched     *scheduler.Scheduler
	times     []time.Duration
	next      int
	allocs    uint64
	bytes     uint64
	decisions int
}

func newCostArm(registry *scheduler.Registry, file string, eps []*endpoint.Endpoint) (*costArm, error) {
	name, data := "upstream default", []byte(config.DefaultText)
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		name, data = filepath.Base(file), b
	}
	cfg, err := config.Load(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	built, err := config.BuildWith(cfg, config.BuildOptions{Registry: registry, Seed: 1, Handle: &scheduler.Handle{
		Log: logr.Discard(), Clock: scheduler.RealClock{}, Endpoints: func() []*endpoint.Endpoint { return eps }}})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &costArm{name: name, sched: built.Scheduler}, nil
}

// run decides requests for about d, timing each decision and counting the
// allocations of all of them.
func (a *costArm) run(ctx context.Context, reqs []*scheduler.Request, eps []*endpoint.Endpoint, d time.Duration) error {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	n := 0
	for end := time.Now().Add(d); time.Now().Before(end); n++ {
		start := time.Now()
		if err := a.decide(ctx, reqs[a.next%len(reqs)], eps); err != nil {
			return err
		}
		a.times = append(a.times, time.Since(start))
		a.next++
	}
	runtime.ReadMemStats(&after)
	a.allocs += after.Mallocs - before.Mallocs
	a.bytes += after.TotalAlloc - before.TotalAlloc
	a.decisions += n
	return nil
}

// decide makes one decision as the server does, and ends the request (so
// in-flight books stay level). A request the config refuses (shed, no
// candidate) is an error: the measurement would be of the refusal.
func (a *costArm) decide(ctx context.Context, req *scheduler.Request, eps []*endpoint.Endpoint) error {
	st := a.sched.NewState()
	res, err := a.sched.Schedule(ctx, st, req, eps)
	if err != nil {
		return err
	}
	a.sched.PreRequest(ctx, st, req, res)
	a.sched.ResponseComplete(ctx, st, req, &scheduler.Response{StatusCode: 200})
	return nil
}

func writeCost(w io.Writer, arms []*costArm, f costFlags) error {
	mean := func(a *costArm) float64 {
		var sum time.Duration
		for _, t := range a.times {
			sum += t
		}
		return float64(sum) / float64(len(a.times)) / 1e3
	}
	base := mean(arms[1])
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "config\tdecisions\tmean µs\tp50 µs\tp99 µs\tallocs\tbytes\t× baseline\t\n")
	for _, a := range arms {
		slices.Sort(a.times)
		q := func(p float64) float64 { return float64(a.times[int(p*float64(len(a.times)-1))]) / 1e3 }
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%.2f\t\n", a.name, a.decisions, mean(a), q(0.5), q(0.99),
			float64(a.allocs)/float64(a.decisions), float64(a.bytes)/float64(a.decisions), mean(a)/base)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d endpoints, %d KiB chat prompts sharing a system prompt in groups of 8; allocations include "+
		"the request's state and the timing; baseline: %s\n", f.endpoints, f.promptKiB, arms[1].name)
	return err
}

// costEndpoints are n endpoints with fresh, varied load (seeded, so two
// runs measure the same pool).
func costEndpoints(n int) []*endpoint.Endpoint {
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([]*endpoint.Endpoint, n)
	for i := range out {
		e := endpoint.New(endpoint.Spec{Name: fmt.Sprintf("server-%d", i), Address: fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), Port: 8000})
		e.SetMetrics(&endpoint.Metrics{WaitingQueueSize: rng.IntN(8), RunningRequestsSize: rng.IntN(48),
			KVCacheUsagePercent: rng.Float64() * 0.9, CacheBlockSize: 16, CacheNumBlocks: 8192,
			// Scraped "in an hour": fresh however long the run takes.
			ActiveModels: map[string]int{}, WaitingModels: map[string]int{}, UpdateTime: time.Now().Add(time.Hour)})
		e.SetStale(false)
		out[i] = e
	}
	return out
}

// costRequests are n chat requests of about size bytes, in groups of eight
// that share a system prompt (three quarters of the bytes).
func costRequests(n, size int) []*scheduler.Request {
	out := make([]*scheduler.Request, n)
	for i := range out {
		system := strings.Repeat(fmt.Sprintf("You are assistant %d. ", i/8), size*3/4/22+1)
		user := strings.Repeat(fmt.Sprintf("Question %d. ", i), size/4/13+1)
		raw := fmt.Sprintf(`{"model":"m","messages":[{"role":"system","content":%q},{"role":"user","content":%q}]}`, system, user)
		body, err := request.Parse(request.ChatCompletions, []byte(raw))
		if err != nil {
			panic(err) // the JSON above is well formed
		}
		out[i] = &scheduler.Request{ID: fmt.Sprintf("cost-%d", i), Model: "m", IncomingModel: "m", Body: body,
			Headers: map[string]string{":path": "/v1/chat/completions"}}
	}
	return out
}
