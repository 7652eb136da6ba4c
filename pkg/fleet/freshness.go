package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// Freshness measures what metric freshness is worth to one policy: every
// workload's ladder run with scrapes every Base and every one of
// Intervals, on the same traces (seed by seed), so that each difference
// is paired. It answers the operator's question behind
// --refresh-metrics-interval, and bounds any scheme that would scrape less
// often to save the EPP's CPU.
type Freshness struct {
	Workloads []Workload
	Policy    Policy
	// Base is the reference interval (default DefaultScrapeInterval);
	// Intervals, shorter or longer, are compared with it.
	Base      time.Duration
	Intervals []time.Duration
	// Seeds pair the runs (default 1…6); workloads' MinSeeds do not apply.
	Seeds []uint64
	// ScrapeJitter and Timeout are passed to every RunSpec.
	ScrapeJitter, Timeout time.Duration
	Workers               int
	// Progress is as Matrix.Progress.
	Progress func(done, total int, spec RunSpec, res *StageResult)
}

// FreshnessReport is a Freshness study's outcome, one row per workload
// and compared interval.
type FreshnessReport struct {
	Policy      string         `json:"policy"`
	BaseMs      float64        `json:"baseMs"`
	Seeds       []uint64       `json:"seeds"`
	Rows        []FreshnessRow `json:"rows"`
	WallSeconds float64        `json:"wallSeconds"`
}

// FreshnessRow compares one interval with the base on one workload.
// ThroughputRatio and TTFTP90Ratio are geometric means over the ladder of
// the seed-averaged stage ratios (interval / base), as the goals compare
// policies.
type FreshnessRow struct {
	Workload        string           `json:"workload"`
	IntervalMs      float64          `json:"intervalMs"`
	ThroughputRatio float64          `json:"throughputRatio"`
	TTFTP90Ratio    float64          `json:"ttftP90Ratio"`
	Stages          []FreshnessStage `json:"stages"`
}

// FreshnessStage is one QPS stage, paired seed by seed: the mean change of
// output tokens/s and the median change of TTFT p90, in percent, and how
// many seeds each got worse on.
type FreshnessStage struct {
	QPS                  float64 `json:"qps"`
	ThroughputPct        float64 `json:"throughputPct"`
	TTFTP90Pct           float64 `json:"ttftP90Pct"`
	SeedsLessThroughput  int     `json:"seedsLessThroughput"`
	SeedsSlowerTTFTP90   int     `json:"seedsSlowerTtftP90"`
	BaseOutputTokensPerS float64 `json:"baseOutputTokensPerS"`
	BaseTTFTP90Ms        float64 `json:"baseTtftP90Ms"`
}

func (f *Freshness) base() time.Duration {
	if f.Base > 0 {
		return f.Base
	}
	return DefaultScrapeInterval
}

func (f *Freshness) seeds() []uint64 {
	if len(f.Seeds) > 0 {
		return f.Seeds
	}
	return []uint64{1, 2, 3, 4, 5, 6}
}

func (f *Freshness) validate() error {
	var errs []error
	if len(f.Workloads) == 0 {
		errs = append(errs, errors.New("freshness: no workloads"))
	}
	if len(f.Intervals) == 0 {
		errs = append(errs, errors.New("freshness: no intervals to compare"))
	}
	for i, iv := range f.Intervals {
		switch {
		case iv == f.base():
			errs = append(errs, fmt.Errorf("freshness: interval %v is the base", iv))
		case slices.Contains(f.Intervals[:i], iv):
			errs = append(errs, fmt.Errorf("freshness: interval %v listed twice", iv))
		}
	}
	if err := f.Policy.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ParseIntervals reads a comma-separated list of scrape intervals to
// compare with base, each in [1ms, 1m] and none equal to base.
func ParseIntervals(list string, base time.Duration) ([]time.Duration, error) {
	var out []time.Duration
	var errs []error
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		iv, err := time.ParseDuration(s)
		if err != nil || iv < time.Millisecond || iv > time.Minute || iv == base {
			errs = append(errs, fmt.Errorf("%q: want a duration in [1ms, 1m] other than %v", s, base))
			continue
		}
		out = append(out, iv)
	}
	if len(out) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("no intervals given"))
	}
	return out, errors.Join(errs...)
}

// Run executes every run on Workers goroutines and compares.
func (f *Freshness) Run(ctx context.Context) (*FreshnessReport, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	intervals := append([]time.Duration{f.base()}, f.Intervals...)
	var specs []RunSpec
	for _, w := range f.Workloads {
		for _, iv := range intervals {
			for _, q := range w.Ladder {
				for _, seed := range f.seeds() {
					specs = append(specs, RunSpec{Workload: w, Policy: f.Policy, QPS: q, Seed: seed,
						ScrapeInterval: iv, ScrapeJitter: f.ScrapeJitter, Timeout: f.Timeout})
				}
			}
		}
	}
	results := make([]*StageResult, len(specs))
	m := &Matrix{Workers: f.Workers, Progress: f.Progress}
	if err := m.execute(ctx, specs, results); err != nil {
		return nil, err
	}
	rep := &FreshnessReport{Policy: f.Policy.Name, BaseMs: ms(f.base()), Seeds: f.seeds()}
	next := 0
	take := func(n int) []*StageResult { next += n; return results[next-n : next] }
	for _, w := range f.Workloads {
		per := len(w.Ladder) * len(f.seeds())
		base := take(per)
		for _, iv := range f.Intervals {
			rep.Rows = append(rep.Rows, compareFreshness(w, ms(iv), base, take(per), len(f.seeds())))
		}
	}
	rep.WallSeconds = round3(time.Since(start).Seconds())
	return rep, nil
}

// compareFreshness pairs the runs of one interval with the base's: both
// are in ladder order, then seed order.
func compareFreshness(w Workload, intervalMs float64, base, other []*StageResult, nSeeds int) FreshnessRow {
	row := FreshnessRow{Workload: w.Name, IntervalMs: intervalMs}
	logT, logL, n := 0.0, 0.0, 0
	for i, q := range w.Ladder {
		b, o := base[i*nSeeds:(i+1)*nSeeds], other[i*nSeeds:(i+1)*nSeeds]
		st := FreshnessStage{QPS: q}
		var dT, dL []float64
		for k := range b {
			dT = appendChange(dT, o[k].OutputTokensPerS, b[k].OutputTokensPerS)
			dL = appendChange(dL, o[k].TTFT.P90, b[k].TTFT.P90)
			if o[k].OutputTokensPerS < b[k].OutputTokensPerS {
				st.SeedsLessThroughput++
			}
			if o[k].TTFT.P90 > b[k].TTFT.P90 {
				st.SeedsSlowerTTFTP90++
			}
		}
		st.ThroughputPct, st.TTFTP90Pct = round3(mean(dT)), round3(median(dL))
		ab, ao := average(b), average(o)
		st.BaseOutputTokensPerS, st.BaseTTFTP90Ms = round3(ab.OutputTokensPerS), round3(ab.TTFT.P90)
		row.Stages = append(row.Stages, st)
		t, l := ratio(ao.OutputTokensPerS, ab.OutputTokensPerS), ratio(ao.TTFT.P90, ab.TTFT.P90)
		if t > 0 && l > 0 && !math.IsInf(t, 0) && !math.IsInf(l, 0) {
			logT, logL, n = logT+math.Log(t), logL+math.Log(l), n+1
		}
	}
	if n > 0 {
		row.ThroughputRatio, row.TTFTP90Ratio = round3(math.Exp(logT/float64(n))), round3(math.Exp(logL/float64(n)))
	}
	return row
}

// appendChange appends the change from base to v in percent, unless it is
// undefined (a zero base).
func appendChange(out []float64, v, base float64) []float64 {
	if r := ratio(v, base); !math.IsInf(r, 0) {
		out = append(out, 100*(r-1))
	}
	return out
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(max(1, len(v)))
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// worstStage is the stage with the lowest value of key.
func (r *FreshnessRow) worstStage(key func(FreshnessStage) float64) FreshnessStage {
	return slices.MinFunc(r.Stages, func(a, b FreshnessStage) int {
		ka, kb := key(a), key(b)
		switch {
		case ka < kb:
			return -1
		case ka > kb:
			return 1
		}
		return 0
	})
}

// WriteFreshness writes the study's table (markdown, readable as text).
func WriteFreshness(w io.Writer, f *FreshnessReport) error {
	var b strings.Builder
	writeFreshness(&b, f)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeFreshness renders the study as a section of the fleet report.
func writeFreshness(b *strings.Builder, f *FreshnessReport) {
	if f == nil || len(f.Rows) == 0 {
		return
	}
	fmt.Fprintf(b, "### What metric freshness is worth\n\n")
	fmt.Fprintf(b, "`%s` on every workload's ladder with the simulated scraper at other intervals than %.0f ms, "+
		"paired seed by seed (seeds %v, %.0f s). Throughput and TTFT p90 are geometric means over the ladder of the "+
		"interval's ratio to %.0f ms (one noisy stage can move them); the worst stages give the paired mean change of "+
		"output tokens/s (and on how many seeds it fell) and the median change of TTFT p90 (and on how many seeds it "+
		"rose). Scraping less often saves the EPP CPU, more often spends it; this table is what either does to the "+
		"fleet.\n\n", f.Policy, f.BaseMs, f.Seeds, f.WallSeconds, f.BaseMs)
	b.WriteString("| workload | interval | throughput | TTFT p90 | stage losing most throughput | stage with the slowest TTFT p90 |\n")
	b.WriteString("|---|---:|---:|---:|---|---|\n")
	for i := range f.Rows {
		r := &f.Rows[i]
		t := r.worstStage(func(s FreshnessStage) float64 { return s.ThroughputPct })
		l := r.worstStage(func(s FreshnessStage) float64 { return -s.TTFTP90Pct })
		n := len(f.Seeds)
		fmt.Fprintf(b, "| %s | %.0f ms | %.3f× | %.3f× | %g QPS: %+.1f %% (%d/%d seeds) | %g QPS: %+.1f %% (%d/%d seeds; %s at %.0f ms) |\n",
			r.Workload, r.IntervalMs, r.ThroughputRatio, r.TTFTP90Ratio,
			t.QPS, t.ThroughputPct, t.SeedsLessThroughput, n,
			l.QPS, l.TTFTP90Pct, l.SeedsSlowerTTFTP90, n, secs(l.BaseTTFTP90Ms), f.BaseMs)
	}
	b.WriteString("\n")
}
