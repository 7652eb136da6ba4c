// Package overhead is the result file of the overhead benchmark
// (hack/benchoverhead), which hack/benchreport turns into tables and plots.
// Keeping the schema in one package lets the smoke test prove that what the
// benchmark writes is what the report reads.
package overhead

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// SchemaVersion changes when a field changes meaning. Version 2: capacity
// and reference runs are repeated (Arm.Capacities, Arm.References) and the
// figures are medians.
const SchemaVersion = 2

// Report is one run of the benchmark matrix.
type Report struct {
	Schema      int       `json:"schema"`
	Started     time.Time `json:"started"`
	WallSeconds float64   `json:"wall_s"`
	// Command is the command line that produced the report.
	Command  string   `json:"command"`
	Quick    bool     `json:"quick"`
	Machine  Machine  `json:"machine"`
	Settings Settings `json:"settings"`
	// Idle is the EPP's cost with no traffic, per endpoint count.
	Idle []Idle `json:"idle"`
	// Profile is the file name (next to the report) of a CPU profile of
	// the EPP taken during an extra closed-loop run in ProfileCell, at that
	// cell's concurrency and prompt size; "" if none.
	Profile     string `json:"profile,omitempty"`
	ProfileCell string `json:"profile_cell,omitempty"`

	Rows []Row `json:"rows"`
}

// Machine describes where the benchmark ran.
type Machine struct {
	CPUModel  string `json:"cpu_model"`
	Cores     int    `json:"cores"`
	GoVersion string `json:"go_version"`
	Kernel    string `json:"kernel"`
	// Commit is the checked-out commit the binaries were built from (see
	// GitCommit), so a report regenerated later says what it measured.
	Commit string `json:"commit,omitempty"`
	// LoadAvgStart and LoadAvgEnd are /proc/loadavg before and after: other
	// work on a shared machine shows here.
	LoadAvgStart string `json:"loadavg_start"`
	LoadAvgEnd   string `json:"loadavg_end"`
	// Pinning says which process ran on which CPU ("" when unpinned).
	Pinning string `json:"pinning"`
	// CPUPressurePct is the share of the run's wall time during which some
	// runnable task on the machine waited for a CPU (Linux PSI), -1 when
	// unavailable: the contention the numbers were measured under.
	CPUPressurePct float64 `json:"cpu_pressure_pct"`
}

// Settings are the benchmark's parameters.
type Settings struct {
	TLS            bool   `json:"tls"`
	ScrapeInterval string `json:"scrape_interval"`
	PickerConfig   string `json:"picker_config"`
	// CustomConfig is set when PickerConfig came from benchoverhead
	// --config rather than being the random picker alone.
	CustomConfig bool `json:"custom_config,omitempty"`
	// EPPFlags are extra flags the EPP ran with (what-if runs).
	EPPFlags []string `json:"epp_flags,omitempty"`
	// Compare, when set, names the second EPP build of a what-if
	// comparison (benchoverhead --compare), measured like the first in
	// every cell, with CompareFlags and ComparePickerConfig.
	Compare             string   `json:"compare,omitempty"`
	CompareFlags        []string `json:"compare_flags,omitempty"`
	ComparePickerConfig string   `json:"compare_picker_config,omitempty"`
	ChunkBytes          int      `json:"chunk_bytes"`
	Response            string   `json:"response"`
	Connections         int      `json:"connections"`
	MetricsPage         int      `json:"metrics_page_bytes"`
	ProbeSeconds        float64  `json:"probe_s"`
	StepSeconds         float64  `json:"step_s"`
	RefSeconds          float64  `json:"reference_s"`
	// Ladder lists the fractions of the closed-loop capacity tried, highest
	// first, when searching the sustained rate.
	Ladder []float64 `json:"ladder"`
	// RefFraction of the EPP arm's capacity is the common reference load.
	RefFraction float64 `json:"reference_fraction"`
	// RefRate, when set, was the reference load instead (req/s, every cell).
	RefRate float64 `json:"reference_rate_rps,omitempty"`
	// A ladder step passes when p99 latency ≤ P99BoundMs and throughput ≥
	// MinDelivered × offered.
	P99BoundMs   float64 `json:"p99_bound_ms"`
	MinDelivered float64 `json:"min_delivered"`
	MaxRequests  int     `json:"max_requests,omitempty"`
	// Repeats is how many times each cell's capacity and reference runs
	// were repeated, alternating the arms (EPP, [compared EPP,] floor, ...).
	Repeats int `json:"repeats"`
}

// Idle is the EPP with no traffic: the cost of scraping alone.
type Idle struct {
	Endpoints int     `json:"endpoints"`
	EPPCores  float64 `json:"epp_cores"`
	// ScrapesPerSecond is what the EPP achieved; TargetScrapesPerSecond is
	// endpoints ÷ interval.
	ScrapesPerSecond       float64 `json:"scrapes_per_s"`
	TargetScrapesPerSecond float64 `json:"target_scrapes_per_s"`
	MetricsServerCores     float64 `json:"metrics_server_cores"`
	// CompareCores is the compared EPP's idle CPU (Settings.Compare).
	CompareCores float64 `json:"compare_cores,omitempty"`
}

// Row is one cell of the matrix: both arms at the same endpoints,
// concurrency and prompt size.
type Row struct {
	Endpoints   int `json:"endpoints"`
	Concurrency int `json:"concurrency"`
	PromptBytes int `json:"prompt_bytes"`
	// Repeats, when set, overrides Settings.Repeats for this row (the
	// target cell is measured more often).
	Repeats int `json:"repeats,omitempty"`
	// ReferenceRate is the offered rate both arms' Reference runs used.
	ReferenceRate float64 `json:"reference_rps"`
	EPP           Arm     `json:"epp"`
	Floor         Arm     `json:"floor"`
	// Compare is the second EPP build of a comparison, measured like EPP
	// at the same reference rate (nil otherwise).
	Compare *Arm `json:"compare,omitempty"`
	// Loads are both arms at fixed offered rates, repeated like the
	// reference runs (one cell only): how the added latency grows with load.
	Loads []LoadPoint `json:"loads,omitempty"`
}

// LoadPoint is both arms at one fixed offered rate, one run per repeat
// each, the two runs of a repeat back to back with the same arrival seed.
type LoadPoint struct {
	Rate    float64 `json:"rps"`
	EPP     []Run   `json:"epp"`
	Floor   []Run   `json:"floor"`
	Compare []Run   `json:"compare,omitempty"`
}

// Added is the median (and spread) of the per-repeat differences of f,
// EPP minus floor, at this load.
func (l LoadPoint) Added(f func(Run) float64) Stat { return addedOver(l.EPP, l.Floor, f) }

// CompareDiff is the compared build's f minus the EPP's at this load (see
// Row.CompareDiff).
func (l LoadPoint) CompareDiff(f func(Run) float64) Stat { return addedOver(l.Compare, l.EPP, f) }

// AddedP50 is the EPP's p50 latency minus the floor's at the reference
// rate, in microseconds: the median (and spread) of the per-repeat
// differences, each repeat's two arms having run back to back.
func (r Row) AddedP50() Stat { return r.added(func(x Run) float64 { return x.P50us }) }

// AddedP99 is AddedP50 at the 99th percentile.
func (r Row) AddedP99() Stat { return r.added(func(x Run) float64 { return x.P99us }) }

// AddedServiceP99 is the same difference for the service time (from the
// actual send), which leaves out the wait for a free slot in the generator:
// the servers' own share of the tail.
func (r Row) AddedServiceP99() Stat { return r.added(func(x Run) float64 { return x.SvcP99us }) }

func (r Row) added(f func(Run) float64) Stat {
	return addedOver(r.EPP.References, r.Floor.References, f)
}

// CompareDiff is the compared build's f minus the EPP's at the reference
// rate: the median (and interval) of per-repeat differences, the two builds
// of a repeat having run back to back. N is 0 without a comparison.
func (r Row) CompareDiff(f func(Run) float64) Stat {
	if r.Compare == nil {
		return Summarise(nil)
	}
	return addedOver(r.Compare.References, r.EPP.References, f)
}

// CompareRatio is the compared build's f over the EPP's in the capacity
// runs, per repeat (for rates such as requests per core).
func (r Row) CompareRatio(f func(Run) float64) Stat {
	if r.Compare == nil {
		return Summarise(nil)
	}
	var q []float64
	for i := range min(len(r.Compare.Capacities), len(r.EPP.Capacities)) {
		if a, b := f(r.EPP.Capacities[i]), f(r.Compare.Capacities[i]); a > 0 && b > 0 {
			q = append(q, b/a)
		}
	}
	return Summarise(q)
}

// addedOver pairs the i-th runs of the two arms, skipping pairs where
// either completed nothing.
func addedOver(epp, floor []Run, f func(Run) float64) Stat {
	var d []float64
	for i := range min(len(epp), len(floor)) {
		e, fl := epp[i], floor[i]
		if e.Completed > 0 && fl.Completed > 0 {
			d = append(d, f(e)-f(fl))
		}
	}
	return Summarise(d)
}

// Arm is one server (the EPP or the no-op floor) in one cell.
type Arm struct {
	// Capacities holds the closed-loop capacity run of every repeat.
	Capacities []Run `json:"capacity"`
	// Ladder is run once, from the median capacity.
	Ladder []Run `json:"ladder"`
	// Sustained is the offered rate of the first (highest) passing ladder
	// step, 0 when none passed.
	Sustained float64 `json:"sustained_rps"`
	// References holds the reference-rate run of every repeat (none when
	// the EPP completed nothing to set the rate).
	References []Run   `json:"reference"`
	PeakRSSMiB float64 `json:"peak_rss_mib"`
}

// Capacity summarises f over the capacity runs.
func (a Arm) Capacity(f func(Run) float64) Stat { return over(a.Capacities, f) }

// Reference summarises f over the reference runs that completed requests.
func (a Arm) Reference(f func(Run) float64) Stat {
	var done []Run
	for _, r := range a.References {
		if r.Completed > 0 {
			done = append(done, r)
		}
	}
	return over(done, f)
}

// Completed reports whether any capacity run completed a request.
func (a Arm) Completed() bool {
	return slices.ContainsFunc(a.Capacities, func(r Run) bool { return r.Completed > 0 })
}

func over(runs []Run, f func(Run) float64) Stat {
	xs := make([]float64, len(runs))
	for i, r := range runs {
		xs[i] = f(r)
	}
	return Summarise(xs)
}

// AtSustained is the passing ladder step, if any.
func (a Arm) AtSustained() (Run, bool) {
	for _, r := range a.Ladder {
		if r.Passed {
			return r, true
		}
	}
	return Run{}, false
}

// Stat is the median of a few repeated measurements and their range; N is
// 0 (and the rest NaN) when nothing was measured.
type Stat struct {
	N                int
	Median, Min, Max float64
	// Lo and Hi bound the median with probability Conf, from six samples
	// on; with fewer, Conf and they are 0. See medianCI.
	Lo, Hi, Conf float64
}

// Summarise returns the median (the mean of the middle two for an even
// count), minimum, maximum and median confidence interval of xs.
func Summarise(xs []float64) Stat {
	if len(xs) == 0 {
		return Stat{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + m) / 2
	}
	st := Stat{N: len(s), Median: m, Min: s[0], Max: s[len(s)-1]}
	if k, conf := medianCI(len(s)); k > 0 {
		st.Lo, st.Hi, st.Conf = s[k-1], s[len(s)-k], conf
	}
	return st
}

// ciLevel is the least coverage a median interval must have.
const ciLevel = 0.95

// medianCI picks the narrowest interval of order statistics [x(k), x(n+1-k)]
// (1-based, of n sorted samples) that covers the median with probability at
// least ciLevel, and returns k and that probability; k is 0 when even
// [min, max] falls short (n < 6). Each sample lies below the median with
// probability 1/2 whatever the distribution (the sign test), so the
// interval misses it only when fewer than k samples fall on one side:
// coverage 1 - 2·P(Binomial(n, 1/2) < k). Repeats of a noisy benchmark are
// far from normal (one stalled run can double a p99), so no distribution is
// assumed.
func medianCI(n int) (k int, conf float64) {
	tail, term := 0.0, math.Pow(0.5, float64(n)) // P(B <= i), P(B = i)
	for i := 0; 2*(i+1) <= n; i++ {
		tail += term
		c := 1 - 2*tail // coverage of k = i+1
		if c < ciLevel {
			break
		}
		k, conf = i+1, c
		term *= float64(n-i) / float64(i+1)
	}
	return k, conf
}

// Run is one load run against one arm.
type Run struct {
	Offered    float64  `json:"offered_rps"`
	Throughput float64  `json:"throughput_rps"`
	Completed  int      `json:"completed"`
	Failed     int      `json:"failed"`
	Errors     []string `json:"errors,omitempty"`
	P50us      float64  `json:"p50_us"`
	P90us      float64  `json:"p90_us"`
	P99us      float64  `json:"p99_us"`
	P999us     float64  `json:"p999_us"`
	MaxUs      float64  `json:"max_us"`
	// WorstAtSeconds is when the slowest request was meant to be sent,
	// from the start of the run.
	WorstAtSeconds float64 `json:"worst_at_s"`
	SvcP50us       float64 `json:"service_p50_us"`
	SvcP99us       float64 `json:"service_p99_us"`
	// LagP50us and LagP99us are the load generator's own wake-up lag: how
	// late a slot that was free before an arrival's intended time actually
	// sent it (open loop only). It is part of both arms' latencies.
	LagP50us float64 `json:"lag_p50_us"`
	LagP99us float64 `json:"lag_p99_us"`
	// CPUSeconds is the server process's CPU time during the run;
	// GenCPUSeconds the load generator's.
	CPUSeconds    float64 `json:"cpu_s"`
	GenCPUSeconds float64 `json:"gen_cpu_s"`
	WallSeconds   float64 `json:"wall_s"`
	// ScrapesPerSecond is the EPP's achieved metrics scrape rate.
	ScrapesPerSecond float64 `json:"scrapes_per_s,omitempty"`
	// CPUPressurePct is Machine.CPUPressurePct during this run.
	CPUPressurePct float64 `json:"cpu_pressure_pct"`
	// Passed is set on ladder steps that were sustained (see Settings).
	Passed bool `json:"passed"`
}

// CPUPer1k is the server's CPU seconds per 1,000 completed requests.
func (r Run) CPUPer1k() float64 {
	if r.Completed == 0 {
		return 0
	}
	return r.CPUSeconds / float64(r.Completed) * 1000
}

// PerCore is completed requests per second of server CPU.
func (r Run) PerCore() float64 {
	if r.CPUSeconds <= 0 {
		return 0
	}
	return float64(r.Completed) / r.CPUSeconds
}

// Load reads and validates a report file.
func Load(path string) (*Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read overhead report: %w", err)
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("parse overhead report %q: %w", path, err)
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("overhead report %q: %w", path, err)
	}
	return &r, nil
}

// Validate checks the report is well formed: the right schema, at least
// one row, and both arms of every row measured Repeats times. The EPP may
// have completed no request (a collapsed server is a result); then the row
// has no reference rate and no reference runs.
func (r *Report) Validate() error {
	var errs []error
	if r.Schema != SchemaVersion {
		errs = append(errs, fmt.Errorf("schema %d, want %d", r.Schema, SchemaVersion))
	}
	if len(r.Rows) == 0 {
		errs = append(errs, errors.New("no rows"))
	}
	if r.Settings.Repeats < 1 {
		errs = append(errs, fmt.Errorf("repeats %d, want >= 1", r.Settings.Repeats))
	}
	for i, row := range r.Rows {
		n := r.Settings.Repeats
		if row.Repeats > 0 {
			n = row.Repeats
		}
		errs = append(errs, row.validate(i, n))
		if compared := row.Compare != nil; compared != (r.Settings.Compare != "") {
			errs = append(errs, fmt.Errorf("rows[%d]: a compared arm must be present exactly when settings name a build to compare", i))
		}
	}
	return errors.Join(errs...)
}

func (row Row) validate(i, repeats int) error {
	var errs []error
	if row.Endpoints < 1 || row.Concurrency < 1 || row.PromptBytes < 1 {
		errs = append(errs, fmt.Errorf("rows[%d]: endpoints, concurrency and prompt must be >= 1", i))
	}
	if row.ReferenceRate < 0 || (row.ReferenceRate == 0) != !row.EPP.Completed() {
		errs = append(errs, fmt.Errorf("rows[%d]: reference rate %v must be > 0 exactly when the EPP completed requests", i, row.ReferenceRate))
	}
	arms := []Arm{row.EPP, row.Floor}
	if row.Compare != nil {
		arms = append(arms, *row.Compare)
	}
	for _, a := range arms {
		if len(a.Capacities) != repeats || slices.ContainsFunc(a.Capacities, func(r Run) bool { return r.WallSeconds <= 0 }) {
			errs = append(errs, fmt.Errorf("rows[%d]: an arm was not measured %d times", i, repeats))
			break
		}
		if want := map[bool]int{true: repeats}[row.ReferenceRate > 0]; len(a.References) != want {
			errs = append(errs, fmt.Errorf("rows[%d]: %d reference runs, want %d", i, len(a.References), want))
			break
		}
	}
	for _, l := range row.Loads {
		if l.Rate <= 0 || len(l.EPP) != repeats || len(l.Floor) != repeats {
			errs = append(errs, fmt.Errorf("rows[%d]: load %v req/s: %d and %d runs, want %d per arm at a rate > 0", i, l.Rate, len(l.EPP), len(l.Floor), repeats))
		}
		if want := map[bool]int{true: repeats}[row.Compare != nil]; len(l.Compare) != want {
			errs = append(errs, fmt.Errorf("rows[%d]: load %v req/s: %d runs of the compared build, want %d", i, l.Rate, len(l.Compare), want))
		}
	}
	return errors.Join(errs...)
}

// GitCommit is the checked-out commit, marked when the tree differs from
// it (read-only git commands). The benchmark outputs themselves do not
// count: a fresh run always rewrites them.
func GitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown (not a git checkout)"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no", "--",
		".", ":!docs/benchmarks", ":!docs/benchmarks.md").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		c += " with uncommitted changes"
	}
	return c
}

// Host reads the CPU model and kernel release ("" when unreadable), for
// the machine tables of the benchmark and of the report.
func Host() (cpuModel, kernel string) {
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpuModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	return cpuModel, kernel
}

// LoadAvg is the first three fields of /proc/loadavg ("" when unreadable).
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}
