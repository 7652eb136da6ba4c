package fleet

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
)

// ReportVersion is the schema version of Report's JSON.
const ReportVersion = 1

// Report is the machine-readable outcome of a Matrix (or of one policy
// evaluated by `epp simulate`).
type Report struct {
	Version int `json:"version"`
	// Seeds (a workload may add more, see WorkloadReport.Seeds),
	// ScrapeIntervalMs, ScrapeJitterMs and TimeoutS are the run settings
	// shared by every stage.
	Seeds            []uint64          `json:"seeds"`
	ScrapeIntervalMs float64           `json:"scrapeIntervalMs"`
	ScrapeJitterMs   float64           `json:"scrapeJitterMs"`
	TimeoutS         float64           `json:"timeoutS"`
	Workloads        []WorkloadReport  `json:"workloads"`
	Checks           []Check           `json:"checks"`
	Policies         map[string]string `json:"policies"`
	// WallSeconds is the whole matrix's wall time with Workers workers.
	WallSeconds float64 `json:"wallSeconds"`
	Workers     int     `json:"workers"`
	// Commit is the commit the report was measured at ("": not recorded);
	// Reruns are the studies measured again since, on top of it.
	Commit string  `json:"commit,omitempty"`
	Reruns []Rerun `json:"reruns,omitempty"`
	// Freshness, when studied, is what longer scrape intervals cost.
	Freshness *FreshnessReport `json:"freshness,omitempty"`
	// Priorities, when studied, is what shedding and flow control do for
	// each class of a prioritised workload.
	Priorities *PriorityReport `json:"priorities,omitempty"`
	// Fairness, when studied, is what each fairness policy does for flows
	// of one band that ask for unequal shares.
	Fairness *PriorityReport `json:"fairness,omitempty"`
	// Ordering, when studied, is what each ordering policy does for
	// classes of one band with different TTFT objectives.
	Ordering *PriorityReport `json:"ordering,omitempty"`
	// Disagg, when studied, is aggregated serving against P/D
	// disaggregation at equal server count.
	Disagg *DisaggReport `json:"disagg,omitempty"`
	// Replication is the EPP replicas every policy ran as, when more than
	// one (Matrix.Replication).
	Replication *ReplicationReport `json:"replication,omitempty"`
	// Replicas, when studied, is what active-active EPP replicas cost
	// cache-aware routing and what replica sync wins back.
	Replicas *ReplicaReport `json:"replicas,omitempty"`
	// Multimodal, when studied, is what encoder-cache affinity wins on
	// the multimodal workload.
	Multimodal *MultimodalReport `json:"multimodal,omitempty"`
}

// Rerun is one study measured again on top of an earlier report: its
// section is from Commit, the rest of the report is not.
type Rerun struct {
	// Study is the study's name (see StudyTitle).
	Study       string  `json:"study"`
	Commit      string  `json:"commit"`
	WallSeconds float64 `json:"wallSeconds"`
	Workers     int     `json:"workers"`
}

// studyTitles are the report's studies by name, as the report calls them.
var studyTitles = map[string]string{
	"freshness": "freshness study", "priorities": "priority study", "fairness": "fairness study",
	"ordering": "ordering study", "disagg": "P/D study", "replicas": "replica study", "multimodal": "multimodal study",
}

// StudyTitle is how the report calls the named study (Rerun.Study); false
// for a name it does not know.
func StudyTitle(name string) (string, bool) {
	t, ok := studyTitles[name]
	return t, ok
}

// AddRerun records that study was measured again, replacing an earlier
// record of it.
func (r *Report) AddRerun(x Rerun) {
	r.Reruns = slices.DeleteFunc(r.Reruns, func(o Rerun) bool { return o.Study == x.Study })
	r.Reruns = append(r.Reruns, x)
}

// WorkloadReport is one workload's setup and every policy's ladder.
type WorkloadReport struct {
	Name        string `json:"name"`
	ID          string `json:"id"`
	Description string `json:"description"`
	Published   string `json:"published"`
	Scaling     string `json:"scaling"`
	Profile     string `json:"profile"`
	Servers     int    `json:"servers"`
	// KVTokensPerServer is each server's KV cache after the sizing rule.
	KVTokensPerServer int `json:"kvTokensPerServer"`
	// WorkingSetTokens and its share of the fleet's cache and multiple of
	// one server's (the sizing rule's targets: ~73 % and ≥ 4–6×).
	WorkingSetTokens  int       `json:"workingSetTokens"`
	WorkingSetPct     float64   `json:"workingSetPctOfFleetKV"`
	WorkingSetServers float64   `json:"workingSetServers"`
	SLO               SLOReport `json:"slo"`
	DurationS         float64   `json:"stageDurationS"`
	// Seeds is how many seeds each stage was averaged over.
	Seeds          int            `json:"seeds"`
	WarmupRequests int            `json:"warmupRequests"`
	Policies       []PolicyLadder `json:"policies"`
}

// SLOReport is the goodput objective in milliseconds.
type SLOReport struct {
	TTFTMs float64 `json:"ttftMs"`
	ITLMs  float64 `json:"itlMs"`
}

// PolicyLadder is one policy's stages on one workload, each averaged over
// the seeds; PerSeed keeps the headline numbers of every seed.
type PolicyLadder struct {
	Policy string        `json:"policy"`
	Stages []StageResult `json:"stages"`
	// PerSeedThroughput and PerSeedTTFTP90 hold, per stage, each seed's
	// output tokens/s and TTFT p90 (ms), to show the spread.
	PerSeedThroughput [][]float64 `json:"perSeedOutputTokensPerS"`
	PerSeedTTFTP90    [][]float64 `json:"perSeedTtftP90Ms"`
}

// assemble groups results by workload and policy, averaging seeds.
func (m *Matrix) assemble(results []*StageResult) *Report {
	rep := &Report{
		Version: ReportVersion, Seeds: m.seeds(), Policies: map[string]string{},
		ScrapeIntervalMs: ms(RunSpec{ScrapeInterval: m.ScrapeInterval}.withDefaults().ScrapeInterval),
		ScrapeJitterMs:   ms(RunSpec{ScrapeInterval: m.ScrapeInterval, ScrapeJitter: m.ScrapeJitter}.withDefaults().ScrapeJitter),
		TimeoutS:         RunSpec{Timeout: m.Timeout}.withDefaults().Timeout.Seconds(),
	}
	for _, p := range m.Policies {
		rep.Policies[p.Name] = p.Description
	}
	if rr := replicationReport(m.Replication); rr.Replicas > 1 {
		rep.Replication = &rr
	}
	i := 0
	for _, w := range m.Workloads {
		nSeeds := len(m.seedsFor(w))
		wr := newWorkloadReport(w)
		wr.Seeds = nSeeds
		for _, p := range m.Policies {
			wr.Policies = append(wr.Policies, ladderOf(p.Name, results[i:i+nSeeds*len(w.Ladder)], nSeeds))
			i += nSeeds * len(w.Ladder)
		}
		rep.Workloads = append(rep.Workloads, wr)
	}
	return rep
}

// ladderOf averages a policy's results, grouped stage by stage in runs of
// nSeeds.
func ladderOf(policy string, results []*StageResult, nSeeds int) PolicyLadder {
	pl := PolicyLadder{Policy: policy}
	for at := 0; at < len(results); at += nSeeds {
		group := results[at : at+nSeeds]
		pl.Stages = append(pl.Stages, average(group))
		tp, tt := make([]float64, nSeeds), make([]float64, nSeeds)
		for k, r := range group {
			tp[k], tt[k] = round3(r.OutputTokensPerS), r.TTFT.P90
		}
		pl.PerSeedThroughput = append(pl.PerSeedThroughput, tp)
		pl.PerSeedTTFTP90 = append(pl.PerSeedTTFTP90, tt)
	}
	return pl
}

// newWorkloadReport describes w's setup, sizing included.
func newWorkloadReport(w Workload) WorkloadReport {
	wr := WorkloadReport{
		Name: w.Name, ID: w.ID, Description: w.Description, Published: w.Published, Scaling: w.Scaling,
		Profile: w.Profile, Servers: w.Servers, DurationS: w.Duration.Seconds(), WarmupRequests: w.WarmupRequests,
		SLO:              SLOReport{TTFTMs: ms(w.SLO.TTFT), ITLMs: ms(w.SLO.ITL)},
		WorkingSetTokens: w.Traffic.WorkingSetTokens(),
	}
	if cfg, err := EngineConfig(w); err == nil {
		wr.KVTokensPerServer = cfg.NumBlocks * cfg.BlockSize
	}
	if wr.KVTokensPerServer > 0 && wr.WorkingSetTokens > 0 {
		wr.WorkingSetPct = round3(100 * float64(wr.WorkingSetTokens) / float64(wr.KVTokensPerServer*w.Servers))
		wr.WorkingSetServers = round3(float64(wr.WorkingSetTokens) / float64(wr.KVTokensPerServer))
	}
	return wr
}

// average returns the field-by-field mean of rs (integers rounded), with
// FirstError from the first run that had one.
func average(rs []*StageResult) StageResult {
	if len(rs) == 1 {
		return *rs[0]
	}
	var out StageResult
	sum := reflect.ValueOf(&out).Elem()
	for _, r := range rs {
		addInto(sum, reflect.ValueOf(r).Elem())
		if out.FirstError == "" {
			out.FirstError = r.FirstError
		}
	}
	scaleInto(sum, 1/float64(len(rs)))
	out.Classes = averageClasses(rs)
	out.Disagg = averageDisagg(rs)
	out.Encoder = averageEncoder(rs)
	out.P2P = averageP2P(rs)
	return out
}

// averageClasses is average for the runs' classes, which every run of a
// stage shares.
func averageClasses(rs []*StageResult) []ClassResult {
	if len(rs[0].Classes) == 0 {
		return nil
	}
	out := make([]ClassResult, len(rs[0].Classes))
	for i := range out {
		sum := reflect.ValueOf(&out[i]).Elem()
		for _, r := range rs {
			addInto(sum, reflect.ValueOf(&r.Classes[i]).Elem())
		}
		scaleInto(sum, 1/float64(len(rs)))
		out[i].Name, out[i].Priority = rs[0].Classes[i].Name, rs[0].Classes[i].Priority
	}
	return out
}

// addInto adds the numeric fields of src to dst, recursing into structs.
func addInto(dst, src reflect.Value) {
	for i := range dst.NumField() {
		d, s := dst.Field(i), src.Field(i)
		switch d.Kind() {
		case reflect.Float64:
			d.SetFloat(d.Float() + s.Float())
		case reflect.Int:
			d.SetInt(d.Int() + s.Int())
		case reflect.Struct:
			addInto(d, s)
		}
	}
}

// scaleInto multiplies the numeric fields of v by f.
func scaleInto(v reflect.Value, f float64) {
	for i := range v.NumField() {
		d := v.Field(i)
		switch d.Kind() {
		case reflect.Float64:
			d.SetFloat(round3(d.Float() * f))
		case reflect.Int:
			d.SetInt(int64(float64(d.Int())*f + 0.5))
		case reflect.Struct:
			scaleInto(d, f)
		}
	}
}

// JSON returns the report as indented JSON.
func (r *Report) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode report: %w", err)
	}
	return append(b, '\n'), nil
}

// Workload returns the named workload's report.
func (r *Report) Workload(name string) (*WorkloadReport, bool) {
	for i := range r.Workloads {
		if r.Workloads[i].Name == name {
			return &r.Workloads[i], true
		}
	}
	return nil, false
}

// Ladder returns the named policy's ladder.
func (w *WorkloadReport) Ladder(policy string) (*PolicyLadder, bool) {
	for i := range w.Policies {
		if w.Policies[i].Policy == policy {
			return &w.Policies[i], true
		}
	}
	return nil, false
}

// Peak returns the stage with the highest output tokens/s.
func (l *PolicyLadder) Peak() StageResult {
	best := StageResult{}
	for _, s := range l.Stages {
		if s.OutputTokensPerS > best.OutputTokensPerS {
			best = s
		}
	}
	return best
}

// Top returns the last (highest QPS) stage.
func (l *PolicyLadder) Top() StageResult {
	if len(l.Stages) == 0 {
		return StageResult{}
	}
	return l.Stages[len(l.Stages)-1]
}
