package epp

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/pkg/fleet"
)

// tinySim are flags that make `epp simulate` finish in well under a second.
var tinySim = []string{"--qps", "20", "--duration", "500ms", "--warmup", "5", "--workers", "1"}

// TestSimulateEveryWorkload is the smoke test of the CLI: every built-in
// workload runs at a tiny size and prints a well-formed JSON report.
func TestSimulateEveryWorkload(t *testing.T) {
	t.Parallel()
	for _, w := range fleet.Workloads() {
		t.Run(w.Name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			args := append([]string{"--workload", w.Name, "--json", "--compare", "round-robin"}, tinySim...)
			if err := Simulate(context.Background(), args, &out); err != nil {
				t.Fatal(err)
			}
			var rep fleet.Report
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatalf("output is not a JSON report: %v\n%s", err, out.String())
			}
			if len(rep.Workloads) != 1 || len(rep.Workloads[0].Policies) != 2 {
				t.Fatalf("report has %d workloads, want 1 with 2 policies", len(rep.Workloads))
			}
			for _, l := range rep.Workloads[0].Policies {
				if s := l.Stages[0]; s.QPS != 20 || s.Requests == 0 || s.Completed == 0 {
					t.Errorf("%s: stage %+v", l.Policy, s)
				}
			}
		})
	}
}

func TestSimulateConfigTableAndOut(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "mine.yaml")
	if err := os.WriteFile(cfg, []byte(`apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
`), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	args := append([]string{"--config", cfg, "--servers", "4", "--seed", "3", "--out", filepath.Join(dir, "res"),
		"--classes", "critical:0.2:3,batch:0.8:-1"}, tinySim...)
	if err := Simulate(context.Background(), args, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"mine", "round-robin", "upstream-default", "out tok/s", "4 × qwen32b-tp2", "mine against upstream-default:",
		"critical (priority 3)", "batch (priority -1)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	for _, f := range []string{"simulate.json", "simulate.md"} {
		if st, err := os.Stat(filepath.Join(dir, "res", f)); err != nil || st.Size() == 0 {
			t.Errorf("--out did not write %s: %v", f, err)
		}
	}
}

// TestSimulateSeeds: --seeds runs consecutive seeds and compares the
// policies seed by seed.
// TestSimulateCompareConfigFiles: --compare takes config files too, each
// named by its file name and compared seed by seed like a built-in
// baseline; two files of one name are refused.
func TestSimulateCompareConfigFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, scorer string) string {
		path := filepath.Join(dir, name)
		cfg := "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: " + scorer +
			"\nschedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: " + scorer + "\n"
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	mine, queue := write("mine.yaml", "prefix-cache-scorer"), write("queue.yaml", "queue-scorer")
	if err := os.MkdirAll(filepath.Join(dir, "other"), 0o755); err != nil {
		t.Fatal(err)
	}
	queue2 := write(filepath.Join("other", "queue.yml"), "queue-scorer")
	var out bytes.Buffer
	args := append([]string{"--config", mine, "--compare", queue + ",round-robin", "--seeds", "2"}, tinySim...)
	if err := Simulate(context.Background(), args, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"mine against queue:", "mine against queue, per seed (2 seeds, paired)", "mine against round-robin:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	args = append([]string{"--config", mine, "--compare", queue + "," + queue2}, tinySim...)
	if err := Simulate(context.Background(), args, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), `would be called "queue", as `+queue+` is`) {
		t.Errorf("two files called queue: err = %v", err)
	}
}

func TestSimulateSeeds(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	args := append([]string{"--workload", "no-sharing", "--compare", "round-robin", "--seed", "5", "--seeds", "2", "--json"}, tinySim...)
	if err := Simulate(context.Background(), args, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"seeds": [`) || !strings.Contains(out.String(), "5,") || !strings.Contains(out.String(), "6") {
		t.Errorf("JSON report does not list seeds 5 and 6:\n%.400s", out.String())
	}
	out.Reset()
	args = append([]string{"--workload", "no-sharing", "--compare", "round-robin,random", "--seeds", "2"}, tinySim...)
	if err := Simulate(context.Background(), args, &out); err != nil {
		t.Fatal(err)
	}
	for _, base := range []string{"round-robin", "random"} {
		if want := "ours-default against " + base + ", per seed (2 seeds, paired): "; !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestSimulateFreshness: --freshness runs the evaluated config at other
// scrape intervals and reports the paired study in the table and --out.
func TestSimulateFreshness(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var out bytes.Buffer
	args := append([]string{"--workload", "no-sharing", "--compare", "", "--freshness", "25ms,200ms", "--freshness-seeds", "2",
		"--out", dir}, tinySim...)
	if err := Simulate(context.Background(), args, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"What metric freshness is worth", "| no-sharing | 25 ms |", "| no-sharing | 200 ms |", "seeds [1 2]"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	md, err := os.ReadFile(filepath.Join(dir, "simulate.md"))
	if err != nil || !strings.Contains(string(md), "| no-sharing | 200 ms |") {
		t.Errorf("simulate.md has no freshness table (%v)", err)
	}
}

// TestSimulateSLOFlags: --slo-ttft and --slo-itl replace the workload's
// goodput objectives.
func TestSimulateSLOFlags(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	args := append(append([]string{}, tinySim...), "--slo-ttft", "750ms", "--slo-itl", "25ms")
	if err := Simulate(context.Background(), args, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "SLO TTFT 750 ms, ITL 25 ms") {
		t.Errorf("objectives not in the output:\n%s", out.String())
	}
}

// TestSimulatePrefill: --prefill labels servers for a P/D config, whose
// requests then prefill and decode on different servers; the baseline
// ignores the roles.
func TestSimulatePrefill(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	args := append([]string{"--workload", "agentic", "--config", "../../config/pd.yaml", "--prefill", "2", "--compare", "round-robin"},
		append(append([]string{}, tinySim...), "--qps", "8")...)
	if err := Simulate(context.Background(), append(args, "--json"), &out); err != nil {
		t.Fatal(err)
	}
	var rep fleet.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	pd, rr := rep.Workloads[0].Policies[0].Stages[0], rep.Workloads[0].Policies[1].Stages[0]
	if pd.Disagg == nil || pd.Disagg.PrefillServers != 2 || pd.Disagg.DisaggregatedPct == 0 || pd.Completed == 0 {
		t.Errorf("pd: stage %+v, P/D %+v", pd, pd.Disagg)
	}
	if rr.Disagg == nil || rr.Disagg.DisaggregatedPct != 0 || rr.Completed == 0 {
		t.Errorf("round-robin: stage %+v, P/D %+v", rr, rr.Disagg)
	}
	out.Reset()
	if err := Simulate(context.Background(), args, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "prefill/decode disaggregation:\n  pd at 8 QPS: 2 prefill servers;") {
		t.Errorf("table lacks the P/D lines:\n%s", out.String())
	}
}

// TestSimulateReplicas: --replicas and --replica-sync run every policy as
// active-active EPP replicas, which the report and the table say.
func TestSimulateReplicas(t *testing.T) {
	t.Parallel()
	args := append(append([]string{}, tinySim...), "--replicas", "3", "--replica-sync", "--replica-sync-interval", "50ms")
	var out bytes.Buffer
	if err := Simulate(context.Background(), append(args, "--json"), &out); err != nil {
		t.Fatal(err)
	}
	var rep fleet.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	want := &fleet.ReplicationReport{Replicas: 3, Sync: true, SyncFlushMs: 50, SyncLatencyMs: 1}
	if diff := cmp.Diff(want, rep.Replication); diff != "" {
		t.Errorf("replication (-want +got):\n%s", diff)
	}
	for _, l := range rep.Workloads[0].Policies {
		if s := l.Stages[0]; s.Completed == 0 || s.FirstError != "" {
			t.Errorf("%s: stage %+v", l.Policy, s)
		}
	}
	out.Reset()
	if err := Simulate(context.Background(), args, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "EPP: 3 replicas, sync every 50 ms + 1 ms") {
		t.Errorf("table does not say the replicas:\n%s", out.String())
	}
}

func TestSimulateList(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := Simulate(context.Background(), []string{"--list"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, w := range fleet.Workloads() {
		if !strings.Contains(out.String(), w.Name) {
			t.Errorf("--list lacks %s", w.Name)
		}
	}
}

func TestSimulateBadFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("plugins:\n- type: queue-scorer\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	unknown := filepath.Join(dir, "unknown.yaml")
	if err := os.WriteFile(unknown, []byte("apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: no-such-plugin\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	named := filepath.Join(dir, "ours-default.yaml") // the evaluated config's name
	if err := os.WriteFile(named, []byte("apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: queue-scorer\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--workload", "W42"}, "--workload"},
		{[]string{"--retry-evicted", "11"}, "--retry-evicted: retry: at most 10 retries"},
		{[]string{"--engine-priority", "sometimes"}, `--engine-priority: "sometimes" is not auto, on or off`},
		{[]string{"--qps", "10,abc"}, `"abc"`},
		{[]string{"--qps", "-5"}, "--qps"},
		{[]string{"--servers", "-1"}, "servers"},
		{[]string{"--profile", "gpu9000"}, "--profile"},
		{[]string{"--compare", "round-robin,fastest"}, `"fastest"`},
		{[]string{"--compare", "ours-best"}, `"ours-best"`},
		{[]string{"--config", filepath.Join(dir, "missing.yaml")}, "--config"},
		{[]string{"--config", bad}, "apiVersion: required"},
		{[]string{"--config", unknown}, "no-such-plugin"},
		{[]string{"--compare", filepath.Join(dir, "missing.yaml")}, "--compare: open"},
		{[]string{"--compare", bad}, "--compare: " + bad + ": invalid config"},
		{[]string{"--config", bad, "--compare", "round-robin"}, "--config: " + bad},
		{[]string{"--compare", "queue-only.yml"}, "--compare: open queue-only.yml"},
		{[]string{"--compare", named}, `would be called "ours-default", as the evaluated config is`},
		{[]string{"--duration", "-1s"}, "duration"},
		{[]string{"--scrape-interval", "-1s"}, "scrape interval"},
		{[]string{"--workers", "-2"}, "--workers"},
		{[]string{"--classes", "critical:0.2"}, "--classes"},
		{[]string{"--freshness", "50ms"}, `--freshness: "50ms": want a duration in [1ms, 1m] other than 50ms`},
		{[]string{"--freshness", "soon"}, `"soon"`},
		{[]string{"--freshness", "100ms", "--freshness-seeds", "0"}, "--freshness-seeds"},
		{[]string{"--seeds", "0"}, "--seeds: must be in [1, 100]"},
		{[]string{"--prefill", "-1"}, "--prefill: must be in [0, 8)"},
		{[]string{"--prefill", "8"}, "--prefill: must be in [0, 8)"},
		{[]string{"--servers", "2", "--prefill", "2"}, "--prefill: must be in [0, 2)"},
		{[]string{"--slo-itl", "-1ms"}, "--slo-itl (-1ms) must be >= 0"},
		{[]string{"--replicas", "0"}, "--replicas: must be in [1, 64]"},
		{[]string{"--replica-sync"}, "--replica-sync needs --replicas > 1"},
		{[]string{"--replicas", "3", "--replica-sync", "--replica-sync-interval", "-1ms"}, "--replica-sync-interval (-1ms)"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"stray"}, "unexpected arguments"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			err := Simulate(context.Background(), append(append([]string{}, tinySim...), tc.args...), &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %s", err, tc.want)
			}
		})
	}
}
