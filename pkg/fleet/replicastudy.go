package fleet

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// The replica study: one config on a few workloads run as one EPP, as
// three active-active replicas that each see a third of the traffic, and as
// three replicas with replica sync: sharing only their prefix-index
// insertions, and sharing the insertions and their plugins' dispatches at
// three flush intervals, below saturation and at it. It says what running
// several EPP replicas costs and what each part of sync wins back, in this
// model.

// ReplicaArm is one way the study runs the EPP.
type ReplicaArm struct {
	Name        string
	Description string
	Replication Replication
	// Policy, when set, runs instead of the study's policy.
	Policy *Policy
}

// Names of the replica study's arms.
const (
	ArmOneEPP                = "1-replica"
	ArmReplicas              = "3-replicas"
	ArmReplicaSync           = "3-replicas-sync"
	ArmReplicaSyncDispatches = "3-replicas-sync-dispatches"
	ArmReplicaSync20ms       = "3-replicas-sync-20ms"
	ArmReplicaSyncSlow       = "3-replicas-sync-250ms"
	ArmOnePrecise            = "1-replica-precise"
	ArmReplicasPrecise       = "3-replicas-precise"
	ArmReplicaSyncPrecise    = "3-replicas-precise-sync"
)

// PreciseArms run a precise prefix-cache config (yaml, e.g.
// config/precise-prefix-cache.yaml) as one EPP, as three replicas without
// sync: its index comes from the servers' KV events, which every replica
// receives, where the approximate index of each replica sees only the
// requests it routed; and as three replicas sharing their speculative
// entries through replica sync, which the events do not carry.
func PreciseArms(yaml []byte) []ReplicaArm {
	p := ConfigPolicy("precise", "precise prefix-cache routing from the servers' KV events", yaml)
	return []ReplicaArm{
		{Name: ArmOnePrecise, Description: "one EPP running precise prefix-cache routing (config/precise-prefix-cache.yaml: " +
			"the default profile, prefix matches from the servers' KV events and tokenizer)", Policy: &p},
		{Name: ArmReplicasPrecise, Description: "3 replicas running it without replica sync; every replica receives every " +
			"server's KV events", Replication: Replication{Replicas: 3}, Policy: &p},
		{Name: ArmReplicaSyncPrecise, Description: "the same with replica sync as shipped: each replica's speculative entries " +
			"(a routed request's blocks, until its server's events arrive) sent every 5 ms, applied by the others 1 ms later",
			Replication: Replication{Replicas: 3, ReplicaSync: true, SyncFlush: DefaultSyncFlush, SyncLatency: time.Millisecond},
			Policy:      &p},
	}
}

// ReplicaArms are the study's arms: one EPP (the reference), three
// replicas without sync, three syncing their prefix-index insertions every
// 5 ms as shipped (1 ms latency), the same sharing queue-scorer's
// dispatches too (--replica-sync-dispatches), and insertions every 20 ms
// and 250 ms.
func ReplicaArms() []ReplicaArm {
	sync := func(flush time.Duration) Replication {
		return Replication{Replicas: 3, ReplicaSync: true, SyncFlush: flush, SyncLatency: time.Millisecond}
	}
	withDispatches := sync(DefaultSyncFlush)
	withDispatches.SyncDispatches = true
	return []ReplicaArm{
		{Name: ArmOneEPP, Description: "one EPP routes every request (the reference)"},
		{Name: ArmReplicas, Description: "3 replicas, each request to the next in turn; each replica's prefix index and " +
			"queue-scorer know only its own decisions", Replication: Replication{Replicas: 3}},
		{Name: ArmReplicaSync, Description: "3 replicas with replica sync as shipped: prefix-index insertions sent every 5 ms, " +
			"applied by the others 1 ms later; each queue-scorer counts only its own dispatches", Replication: sync(DefaultSyncFlush)},
		{Name: ArmReplicaSyncDispatches, Description: "the same, sharing queue-scorer's dispatches too (--replica-sync-dispatches)",
			Replication: withDispatches},
		{Name: ArmReplicaSync20ms, Description: "3 replicas with replica sync at a 20 ms flush (1 ms latency)",
			Replication: sync(20 * time.Millisecond)},
		{Name: ArmReplicaSyncSlow, Description: "3 replicas with replica sync at a slow 250 ms flush (1 ms latency)",
			Replication: sync(250 * time.Millisecond)},
	}
}

// ReplicaStudy runs the study on each workload. The first arm is the
// reference: it runs up the workload's ladder, stage by stage, to its knee
// (the first stage completing under 90 % of the offered requests/s, else
// the last, as WorkloadReport.KneeStage); every other arm then runs at the
// knee and at the highest stage at most 2/3 of it.
type ReplicaStudy struct {
	Workloads []Workload
	Policy    Policy
	// Arms defaults to ReplicaArms().
	Arms []ReplicaArm
	// Seeds defaults to {1}, extended to each workload's MinSeeds.
	Seeds   []uint64
	Workers int
	// Progress is as Matrix.Progress.
	Progress func(done, total int, spec RunSpec, res *StageResult)
}

// ReplicaReport is the replica study's outcome: one section per workload.
type ReplicaReport struct {
	Policy      string                  `json:"policy"`
	Workloads   []ReplicaWorkloadReport `json:"workloads"`
	WallSeconds float64                 `json:"wallSeconds"`
}

// ReplicaWorkloadReport is the study on one workload.
type ReplicaWorkloadReport struct {
	Workload string `json:"workload"`
	Seeds    int    `json:"seeds"`
	// KneeQPS is the reference's knee; QPS the stages compared, each
	// labelled saturated when the reference is there.
	KneeQPS   float64            `json:"kneeQps"`
	QPS       []float64          `json:"qps"`
	Saturated []bool             `json:"saturated"`
	Arms      []ReplicaArmReport `json:"arms"`
}

// ReplicaArmReport is one arm and its stages (one per
// ReplicaWorkloadReport.QPS, averaged over the seeds).
type ReplicaArmReport struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Policy names the arm's own policy, when it is not the study's.
	Policy string `json:"policy,omitempty"`
	ReplicationReport
	Stages []StageResult `json:"stages"`
	// Spread is, per stage, how far the seeds' results ranged.
	Spread []SeedSpread `json:"spread"`
}

// SeedSpread is the lowest and highest of a stage's seeds' results.
type SeedSpread struct {
	OutputTokensPerS [2]float64 `json:"outputTokensPerS"`
	GoodputPct       [2]float64 `json:"goodputPct"`
}

// spreadOf returns the range of rs's results.
func spreadOf(rs []*StageResult) SeedSpread {
	out := SeedSpread{OutputTokensPerS: [2]float64{math.Inf(1), math.Inf(-1)}, GoodputPct: [2]float64{math.Inf(1), math.Inf(-1)}}
	for _, r := range rs {
		out.OutputTokensPerS = [2]float64{min(out.OutputTokensPerS[0], r.OutputTokensPerS), max(out.OutputTokensPerS[1], r.OutputTokensPerS)}
		out.GoodputPct = [2]float64{min(out.GoodputPct[0], r.GoodputPct), max(out.GoodputPct[1], r.GoodputPct)}
	}
	return out
}

func (st *ReplicaStudy) arms() []ReplicaArm {
	if len(st.Arms) > 0 {
		return st.Arms
	}
	return ReplicaArms()
}

func (st *ReplicaStudy) validate() error {
	var errs []error
	if len(st.Workloads) == 0 {
		errs = append(errs, errors.New("no workloads"))
	}
	for _, w := range st.Workloads {
		if err := w.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("workload %q: %w", w.Name, err))
		}
	}
	if err := st.Policy.validate(); err != nil {
		errs = append(errs, err)
	}
	var names []string
	for _, a := range st.arms() {
		if slices.Contains(names, a.Name) {
			errs = append(errs, fmt.Errorf("arm %q listed twice", a.Name))
		}
		names = append(names, a.Name)
		if err := a.Replication.validate(); err != nil {
			errs = append(errs, fmt.Errorf("arm %q: %w", a.Name, err))
		}
		if a.Policy != nil {
			if err := a.Policy.validate(); err != nil {
				errs = append(errs, fmt.Errorf("arm %q: %w", a.Name, err))
			}
		}
	}
	if st.Workers < 0 {
		errs = append(errs, fmt.Errorf("workers must be >= 0, got %d", st.Workers))
	}
	return errors.Join(errs...)
}

// Run executes the study's runs on Workers goroutines, one workload after
// the other.
func (st *ReplicaStudy) Run(ctx context.Context) (*ReplicaReport, error) {
	if err := st.validate(); err != nil {
		return nil, fmt.Errorf("replica study: %w", err)
	}
	start := time.Now()
	rep := &ReplicaReport{Policy: st.Policy.Name}
	for _, w := range st.Workloads {
		wr, err := st.runWorkload(ctx, w)
		if err != nil {
			return nil, fmt.Errorf("replica study: workload %q: %w", w.Name, err)
		}
		rep.Workloads = append(rep.Workloads, *wr)
	}
	rep.WallSeconds = round3(time.Since(start).Seconds())
	return rep, nil
}

// runWorkload runs the study on w.
func (st *ReplicaStudy) runWorkload(ctx context.Context, w Workload) (*ReplicaWorkloadReport, error) {
	arms := st.arms()
	m := &Matrix{Seeds: st.Seeds, Workers: st.Workers, Progress: st.Progress}
	seeds := m.seedsFor(w)
	specsAt := func(out []RunSpec, a ReplicaArm, qps ...float64) []RunSpec {
		p := st.Policy
		if a.Policy != nil {
			p = *a.Policy
		}
		for _, q := range qps {
			for _, seed := range seeds {
				out = append(out, RunSpec{Workload: w, Policy: p, QPS: q, Seed: seed, Replication: a.Replication})
			}
		}
		return out
	}
	// The reference climbs the ladder up to its knee, stage by stage.
	var ref [][]*StageResult
	for _, q := range w.Ladder {
		specs := specsAt(nil, arms[0], q)
		results := make([]*StageResult, len(specs))
		if err := m.execute(ctx, specs, results); err != nil {
			return nil, err
		}
		if ref = append(ref, results); saturated(average(results)) {
			break
		}
	}
	knee := len(ref) - 1
	stages := replicaStages(w.Ladder, knee)
	wr := &ReplicaWorkloadReport{Workload: w.Name, Seeds: len(seeds), KneeQPS: w.Ladder[knee]}
	var specs []RunSpec
	for _, i := range stages {
		wr.QPS = append(wr.QPS, w.Ladder[i])
		wr.Saturated = append(wr.Saturated, saturated(average(ref[i])))
	}
	for _, a := range arms[1:] {
		specs = specsAt(specs, a, wr.QPS...)
	}
	results := make([]*StageResult, len(specs))
	if err := m.execute(ctx, specs, results); err != nil {
		return nil, err
	}
	for j, a := range arms {
		ar := ReplicaArmReport{Name: a.Name, Description: a.Description, ReplicationReport: replicationReport(a.Replication)}
		if a.Policy != nil {
			ar.Policy = a.Policy.Name
		}
		for k, i := range stages {
			group := ref[i]
			if j > 0 {
				at := ((j-1)*len(stages) + k) * len(seeds)
				group = results[at : at+len(seeds)]
			}
			ar.Stages = append(ar.Stages, average(group))
			ar.Spread = append(ar.Spread, spreadOf(group))
		}
		wr.Arms = append(wr.Arms, ar)
	}
	return wr, nil
}

// replicaStages are the ladder stages the arms are compared at: the
// highest one at most 2/3 of the knee's QPS (else the first, when the knee
// is not), and the knee.
func replicaStages(ladder []float64, knee int) []int {
	below := -1
	for i := range knee {
		if ladder[i] <= ladder[knee]*2/3 || below < 0 {
			below = i
		}
	}
	if below < 0 {
		return []int{knee}
	}
	return []int{below, knee}
}
