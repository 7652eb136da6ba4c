package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openepp/openepp/hack/benchoverhead/overhead"
)

// TestMain lets the orchestrator re-execute this test binary as its
// children (generator, no-op server, metrics servers).
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := dispatch(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
		stop()
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestQuickRun is the smoke test: the whole benchmark at --quick size (10
// endpoints, concurrency 16, 1 KiB, at most 300 requests per run, both
// arms) against the real EPP binary, producing a well-formed report and
// profile. It takes a few seconds plus building the EPP.
func TestQuickRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	epp := buildEPP(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := filepath.Join(dir, "out", "overhead.json")
	var log bytes.Buffer
	start := time.Now()
	args := []string{"--epp", epp, "--quick", "--repeat", "2", "--out", out, "--log-dir", filepath.Join(dir, "logs")}
	err := runMain(ctx, args, &log)
	if err != nil {
		t.Fatalf("quick run: %v\n%s", err, log.String())
	}
	t.Logf("quick run took %s", time.Since(start))
	rep, err := overhead.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	type shape struct {
		Quick                               bool
		Rows, Idle, Repeats                 int
		Endpoints, Concurrency, PromptBytes int
		Profile                             string
	}
	got := shape{Quick: rep.Quick, Rows: len(rep.Rows), Idle: len(rep.Idle), Repeats: rep.Settings.Repeats, Profile: rep.Profile}
	if len(rep.Rows) > 0 {
		got.Endpoints, got.Concurrency, got.PromptBytes = rep.Rows[0].Endpoints, rep.Rows[0].Concurrency, rep.Rows[0].PromptBytes
	}
	want := shape{Quick: true, Rows: 1, Idle: 1, Repeats: 2, Endpoints: 10, Concurrency: 16, PromptBytes: 1024, Profile: profileFile}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("report shape (-want +got):\n%s", diff)
	}
	for _, a := range []overhead.Arm{rep.Rows[0].EPP, rep.Rows[0].Floor} {
		failed := a.Capacity(func(r overhead.Run) float64 { return float64(r.Failed) }).Max +
			a.Reference(func(r overhead.Run) float64 { return float64(r.Failed) }).Max
		if len(a.Capacities) != 2 || len(a.References) != 2 || failed > 0 || a.PeakRSSMiB <= 0 || len(a.Ladder) == 0 {
			t.Errorf("arm not fully measured twice: %+v", a)
		}
		for _, run := range a.References {
			if run.P50us <= 0 || run.LagP99us < 0 {
				t.Errorf("reference run without latency: %+v", run)
			}
		}
	}
	if rep.Machine.Commit == "" {
		t.Error("report does not say which commit it measured")
	}
	if added := rep.Rows[0].AddedP99(); added.N != 2 {
		t.Errorf("added p99 over %d repeats, want 2", added.N)
	}
	if loads := rep.Rows[0].Loads; len(loads) != 1 || loads[0].Rate != 200 ||
		loads[0].Added(func(r overhead.Run) float64 { return r.P99us }).N != 2 {
		t.Errorf("fixed-load points %+v, want one at 200 req/s measured twice in each arm", loads)
	}
	if st, err := os.Stat(filepath.Join(dir, "out", profileFile)); err != nil || st.Size() == 0 {
		t.Errorf("EPP CPU profile missing or empty: %v", err)
	}
}

func buildEPP(t *testing.T, dir string) string {
	t.Helper()
	epp := filepath.Join(dir, "epp")
	build := exec.Command("go", "build", "-o", epp, "github.com/openepp/openepp/cmd/epp")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build epp: %v\n%s", err, out)
	}
	return epp
}

// queueConfig scores by queue depth instead of picking at random.
const queueConfig = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
  - pluginRef: max-score-picker
`

// TestQuickCompare is the smoke test of a comparison (--compare): the EPP
// against itself with another scrape layout and another config, at
// --quick size. The compared arm must be measured wherever the EPP arm is.
func TestQuickCompare(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	epp := buildEPP(t, dir)
	cfg := filepath.Join(dir, "queue.yaml")
	if err := os.WriteFile(cfg, []byte(queueConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := filepath.Join(dir, "out", "overhead.json")
	var log bytes.Buffer
	args := []string{"--epp", epp, "--compare", epp, "--compare-flag=--metrics-scrape-slots=-1", "--compare-config", cfg,
		"--quick", "--repeat", "2", "--out", out, "--log-dir", filepath.Join(dir, "logs")}
	if err := runMain(ctx, args, &log); err != nil {
		t.Fatalf("quick comparison: %v\n%s", err, log.String())
	}
	rep, err := overhead.Load(out) // validates: the compared arm is in every row and load
	if err != nil {
		t.Fatal(err)
	}
	if rep.Settings.Compare != epp || rep.Settings.ComparePickerConfig != queueConfig ||
		!slices.Equal(rep.Settings.CompareFlags, []string{"--metrics-scrape-slots=-1"}) {
		t.Errorf("settings do not describe the comparison: %+v", rep.Settings)
	}
	row := rep.Rows[0]
	if row.Compare == nil || len(row.Compare.Ladder) == 0 || row.Compare.PeakRSSMiB <= 0 ||
		row.CompareDiff(func(r overhead.Run) float64 { return r.P99us }).N != 2 {
		t.Errorf("compared arm not fully measured: %+v", row.Compare)
	}
	for _, want := range []string{"idle  endpoints=10: compared EPP", "compare − epp"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
}

func TestParseRunFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		args      []string
		want      string // error substring, "" for success
		wantEPs   []int
		wantLoads []float64
	}{
		{name: "minimal", args: []string{"--epp", "x"}},
		{name: "lists", args: []string{"--epp", "x", "--endpoints", "10, 100"}, wantEPs: []int{10, 100}},
		{name: "no epp", args: nil, want: "--epp is required"},
		{name: "bad list", args: []string{"--epp", "x", "--endpoints", "10,zero"}, want: `"zero" is not a positive integer`},
		{name: "negative", args: []string{"--epp", "x", "--concurrency", "-1"}, want: "not a positive integer"},
		{name: "conns", args: []string{"--epp", "x", "--conns", "0"}, want: "--conns must be >= 1"},
		{name: "repeat", args: []string{"--epp", "x", "--repeat", "-2"}, want: "--repeat must be >= 1"},
		{name: "response", args: []string{"--epp", "x", "--response", "half"}, want: "--response must be full or none"},
		{name: "stray", args: []string{"--epp", "x", "extra"}, want: "unexpected arguments"},
		{name: "fixed reference rate", args: []string{"--epp", "x", "--reference-rate", "4000"}},
		{name: "negative reference rate", args: []string{"--epp", "x", "--reference-rate", "-1"}, want: "--reference-rate must be > 0"},
		{name: "load rates", args: []string{"--epp", "x", "--load-rates", "500,1500"}, wantLoads: []float64{500, 1500}},
		{name: "no load rates", args: []string{"--epp", "x", "--load-rates", "none"}, wantLoads: []float64{}},
		{name: "bad load rate", args: []string{"--epp", "x", "--load-rates", "0"}, want: `"0" is not a positive integer`},
		{name: "missing config", args: []string{"--epp", "x", "--config", "/nonexistent/picker.yaml"}, want: "no such file"},
		{name: "compare", args: []string{"--epp", "x", "--compare", "y", "--compare-flag", "--metrics-scrape-slots=-1"}},
		{name: "compare flag alone", args: []string{"--epp", "x", "--compare-flag", "--v=1"}, want: "need --compare"},
		{name: "compare flag not a flag", args: []string{"--epp", "x", "--compare", "y", "--compare-flag", "v=1"}, want: "is not a flag"},
		{name: "missing compare config", args: []string{"--epp", "x", "--compare", "y", "--compare-config", "/nonexistent/b.yaml"}, want: "no such file"},
		{name: "rate and fraction", args: []string{"--epp", "x", "--reference-rate", "4000", "--reference-fraction", "0.5"},
			want: "exclude each other"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o, err := parseRunFlags(tc.args, &bytes.Buffer{})
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error = %v, want it to contain %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantEPs, o.endpoints); diff != "" {
				t.Errorf("endpoints (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantLoads, o.loads); diff != "" {
				t.Errorf("load rates (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlan(t *testing.T) {
	t.Parallel()
	full := newPlan(runOptions{})
	if got := len(full.endpoints) * len(full.concurrency) * len(full.prompts); got != 18 {
		t.Errorf("full matrix has %d cells, want 3 × 3 × 2 = 18", got)
	}
	if got, want := full.profileCell(), (cellKey{100, 16, 1 << 10}); got != want {
		t.Errorf("profiled cell %v, want the target cell %v", got, want)
	}
	quick := newPlan(runOptions{quick: true})
	if got, want := quick.profileCell(), (cellKey{10, 16, 1 << 10}); got != want {
		t.Errorf("quick profiled cell %v, want %v", got, want)
	}
	if full.repeat != 3 || quick.repeat != 1 || newPlan(runOptions{quick: true, repeat: 5}).repeat != 5 {
		t.Errorf("repeats: full %d, quick %d; want 3 and 1 by default, --repeat overriding", full.repeat, quick.repeat)
	}
	if got := newPlan(runOptions{loads: []float64{}}).loads; len(got) != 0 {
		t.Errorf("--load-rates none left loads %v", got)
	}
	if len(full.loads) == 0 {
		t.Error("the full plan has no fixed-load points")
	}
	if quick.maxRequests == 0 || quick.maxRequests > 500 {
		t.Errorf("quick runs are capped at %d requests, want a few hundred", quick.maxRequests)
	}
}

func TestPasses(t *testing.T) {
	t.Parallel()
	r := &runner{p: plan{p99Bound: 10 * time.Millisecond, minDelivered: 0.95}}
	j := job{Duration: time.Second}
	tests := []struct {
		name string
		run  overhead.Run
		want bool
	}{
		{name: "kept up", run: overhead.Run{Completed: 1000, Throughput: 990, P99us: 900}, want: true},
		{name: "tail too long", run: overhead.Run{Completed: 1000, Throughput: 990, P99us: 10001}},
		{name: "fell behind", run: overhead.Run{Completed: 1000, Throughput: 900, P99us: 900}},
		{name: "failures", run: overhead.Run{Completed: 999, Failed: 1, Throughput: 990, P99us: 900}},
	}
	for _, tc := range tests {
		if got := r.passes(tc.run, j); got != tc.want {
			t.Errorf("%s: passes = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestParseProc(t *testing.T) {
	t.Parallel()
	stat := []byte("4242 (my (odd) name) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 8 0 123 456 789\n")
	if got, err := parseStat(stat); err != nil || got != 3.0 {
		t.Errorf("parseStat = %v, %v; want 3 s (300 ticks)", got, err)
	}
	for _, bad := range []string{"", "4242 no parenthesis", "1 (x) S 1 2"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q): no error", bad)
		}
	}
	if got, err := parseHWM([]byte("Name:\tepp\nVmHWM:\t   51200 kB\nVmRSS:\t1 kB\n")); err != nil || got != 50 {
		t.Errorf("parseHWM = %v, %v; want 50 MiB", got, err)
	}
	for _, bad := range []string{"Name:\tepp\n", "VmHWM:\tlots kB\n"} {
		if _, err := parseHWM([]byte(bad)); err == nil {
			t.Errorf("parseHWM(%q): no error", bad)
		}
	}
}

func TestPageVersions(t *testing.T) {
	t.Parallel()
	page := []byte("# HELP vllm:num_requests_waiting x\nvllm:num_requests_waiting{model_name=\"m\"} 0\n" +
		"vllm:kv_cache_usage_perc{model_name=\"m\"} 0\nvllm:other{a=\"b\"} 7\n")
	vs := pageVersions(page)
	if len(vs) != pageVariants {
		t.Fatalf("%d versions, want %d", len(vs), pageVariants)
	}
	for i := 1; i < len(vs); i++ {
		if bytes.Equal(vs[i], vs[i-1]) {
			t.Errorf("versions %d and %d are equal: consecutive scrapes would see no change", i-1, i)
		}
		if !bytes.Contains(vs[i], []byte("vllm:other{a=\"b\"} 7")) {
			t.Errorf("version %d changed an unrelated series", i)
		}
	}
}

// TestGenRejectsBadInput checks the generator's job channel answers bad
// input with an error line instead of stopping or panicking.
func TestGenRejectsBadInput(t *testing.T) {
	t.Parallel()
	ex := &exchanger{bodies: map[int][][]byte{}}
	in := strings.NewReader("not json\n{\"prompt_bytes\":0}\n{\"prompt_bytes\":10,\"concurrency\":0,\"duration\":1000}\n")
	var out bytes.Buffer
	if err := serveJobs(context.Background(), ex, in, &out); err != nil {
		t.Fatal(err)
	}
	var got []string
	dec := json.NewDecoder(&out)
	for dec.More() {
		var r jobResult
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		got = append(got, r.Err)
	}
	want := []string{"bad job", "prompt_bytes must be >= 1", "concurrency must be >= 1"}
	if len(got) != len(want) {
		t.Fatalf("results %q, want %d errors", got, len(want))
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("result %d = %q, want it to contain %q", i, got[i], want[i])
		}
	}
	if err := genMain(context.Background(), []string{"--conns", "0"}, strings.NewReader(""), &out); err == nil {
		t.Error("gen without a target: no error")
	}
}
