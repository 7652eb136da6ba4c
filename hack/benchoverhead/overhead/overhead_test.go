package overhead

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func goodReport() Report {
	run := Run{Completed: 100, CPUSeconds: 0.01, P50us: 300, P99us: 900, WallSeconds: 1}
	arm := Arm{Capacity: run, Reference: run}
	return Report{Schema: SchemaVersion, Rows: []Row{{Endpoints: 10, Concurrency: 1, PromptBytes: 1024, ReferenceRate: 50, EPP: arm, Floor: arm}}}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*Report)
		want   string // "" for valid
	}{
		{name: "valid", mutate: func(*Report) {}},
		{name: "schema", mutate: func(r *Report) { r.Schema = 99 }, want: "schema 99"},
		{name: "no rows", mutate: func(r *Report) { r.Rows = nil }, want: "no rows"},
		{name: "zero cell", mutate: func(r *Report) { r.Rows[0].Concurrency = 0 }, want: "must be >= 1"},
		{name: "no rate", mutate: func(r *Report) { r.Rows[0].ReferenceRate = 0 }, want: "reference rate"},
		{name: "negative rate", mutate: func(r *Report) { r.Rows[0].ReferenceRate = -1 }, want: "reference rate"},
		{name: "collapsed epp", mutate: func(r *Report) { r.Rows[0].ReferenceRate, r.Rows[0].EPP.Capacity.Completed = 0, 0 }},
		{name: "unmeasured", mutate: func(r *Report) { r.Rows[0].Floor.Capacity = Run{} }, want: "rows[0]: an arm was not measured"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := goodReport()
			tc.mutate(&r)
			err := r.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate() = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestDerived(t *testing.T) {
	t.Parallel()
	r := goodReport().Rows[0]
	r.EPP.Reference.P99us = 1400
	if got := r.AddedP99(); got != 500 {
		t.Errorf("AddedP99 = %v, want 500", got)
	}
	if got := r.EPP.Capacity.CPUPer1k(); got != 0.1 {
		t.Errorf("CPUPer1k = %v, want 0.1", got)
	}
	if got := r.EPP.Capacity.PerCore(); got != 10000 {
		t.Errorf("PerCore = %v, want 10000", got)
	}
	if got := (Run{}).PerCore() + (Run{}).CPUPer1k(); got != 0 {
		t.Errorf("empty run derived values = %v, want 0 (no division by zero)", got)
	}
	if _, ok := r.EPP.AtSustained(); ok {
		t.Error("AtSustained found a step in an arm without a ladder")
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.json")
	if err := os.WriteFile(empty, []byte(`{"schema":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		filepath.Join(dir, "missing.json"): "read overhead report",
		bad:                                "parse overhead report",
		empty:                              "no rows",
	} {
		if _, err := Load(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load(%s) = %v, want it to contain %q", filepath.Base(path), err, want)
		}
	}
}
