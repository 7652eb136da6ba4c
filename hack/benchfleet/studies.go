package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/openepp/openepp/hack/benchoverhead/overhead"
	"github.com/openepp/openepp/pkg/fleet"
)

// study is one of the report's studies, prepared from the options: run
// measures it into the report.
type study struct {
	name string // its --rerun name, as fleet.StudyTitle knows it
	run  func(context.Context, *fleet.Report) error
}

// studyNames are the studies, in the order a full run measures them.
var studyNames = []string{"freshness", "priorities", "fairness", "ordering", "disagg", "replicas", "multimodal"}

// studies prepares the studies the options ask for over the matrix's
// workloads and seeds, in studyNames' order, so that a bad flag is
// reported before anything runs.
func (o *options) studies(m *fleet.Matrix) ([]study, error) {
	var out []study
	for _, prepare := range []func(*fleet.Matrix) (*study, error){
		o.freshnessRun, o.classRuns("priorities"), o.classRuns("fairness"), o.classRuns("ordering"), o.disaggRun,
		o.replicasRun, o.multimodalRun,
	} {
		st, err := prepare(m)
		if err != nil {
			return nil, err
		}
		if st != nil {
			out = append(out, *st)
		}
	}
	return out, nil
}

func (o *options) freshnessRun(m *fleet.Matrix) (*study, error) {
	f, err := o.freshnessStudy(m)
	if f == nil || err != nil {
		return nil, err
	}
	return &study{"freshness", func(ctx context.Context, rep *fleet.Report) (err error) {
		rep.Freshness, err = f.Run(ctx)
		return err
	}}, nil
}

// classRuns prepares the study of traffic classes called name:
// "priorities", "fairness" or "ordering".
func (o *options) classRuns(name string) func(*fleet.Matrix) (*study, error) {
	return func(m *fleet.Matrix) (*study, error) {
		flag, spec, arms := "--priorities", o.priorities, fleet.PriorityArms()
		switch name {
		case "fairness":
			flag, spec, arms = "--fairness", o.fairness, fleet.ClassArms(fleet.FairnessPolicies())
		case "ordering":
			flag, spec, arms = "--ordering", o.ordering, fleet.ClassArms(fleet.OrderingPolicies())
		}
		run, err := classStudy(m, o.workers, flag, spec, arms)
		if run == nil || err != nil {
			return nil, err
		}
		return &study{name, func(ctx context.Context, rep *fleet.Report) error {
			r, err := run(ctx)
			switch name {
			case "fairness":
				rep.Fairness = r
			case "ordering":
				rep.Ordering = r
			default:
				rep.Priorities = r
			}
			return err
		}}, nil
	}
}

func (o *options) disaggRun(m *fleet.Matrix) (*study, error) {
	d, err := o.disaggStudy(m)
	if d == nil || err != nil {
		return nil, err
	}
	return &study{"disagg", func(ctx context.Context, rep *fleet.Report) (err error) {
		rep.Disagg, err = d.Run(ctx)
		return err
	}}, nil
}

// replicasRun prepares the replica study, with the --precise arms.
func (o *options) replicasRun(m *fleet.Matrix) (*study, error) {
	st := replicaStudy(m, o.workers)
	if st == nil {
		return nil, nil
	}
	if o.precise != "" {
		yaml, err := os.ReadFile(o.precise)
		if err != nil {
			return nil, fmt.Errorf("--precise: %w", err)
		}
		st.Arms = append(fleet.ReplicaArms(), fleet.PreciseArms(yaml)...)
	}
	return &study{"replicas", func(ctx context.Context, rep *fleet.Report) (err error) {
		rep.Replicas, err = st.Run(ctx)
		return err
	}}, nil
}

func (o *options) multimodalRun(m *fleet.Matrix) (*study, error) {
	mm, err := o.multimodalStudy(m)
	if mm == nil || err != nil {
		return nil, err
	}
	return &study{"multimodal", func(ctx context.Context, rep *fleet.Report) (err error) {
		rep.Multimodal, err = mm.Run(ctx)
		return err
	}}, nil
}

// rerunStudies runs the --rerun studies again on top of the --from report
// and writes it, each re-run recorded with the commit that measured it.
func (o *options) rerunStudies(ctx context.Context, m *fleet.Matrix, studies []study) error {
	if o.from == "" {
		return fmt.Errorf("--rerun: needs --from, the report to re-run studies of")
	}
	if o.quick {
		return fmt.Errorf("--rerun: not with --quick, which would mix stage sizes in one report")
	}
	var picked []study
	for _, name := range split(o.rerun) {
		i := slices.IndexFunc(studies, func(s study) bool { return s.name == name })
		if i < 0 {
			return fmt.Errorf("--rerun: %q is not a study these flags run (studies: %v)", name, studyNames)
		}
		picked = append(picked, studies[i])
	}
	rep, err := load(o.from)
	if err != nil {
		return err
	}
	if !slices.Equal(rep.Seeds, m.Seeds) {
		return fmt.Errorf("--rerun: --from report has seeds %v, these flags %v", rep.Seeds, m.Seeds)
	}
	switch {
	case rep.Commit == "":
		rep.Commit = o.fromCommit
	case o.fromCommit != "" && o.fromCommit != rep.Commit:
		return fmt.Errorf("--from-commit %s: the report records commit %s", o.fromCommit, rep.Commit)
	}
	workers := o.workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	commit := overhead.GitCommit()
	for _, st := range picked {
		start := time.Now()
		if err := st.run(ctx, rep); err != nil {
			return err
		}
		fmt.Fprintln(os.Stderr)
		rep.AddRerun(fleet.Rerun{Study: st.name, Commit: commit, WallSeconds: math.Round(time.Since(start).Seconds()), Workers: workers})
	}
	rep.Checks = fleet.Checks(rep)
	return o.write(rep)
}
