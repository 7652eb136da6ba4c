package config

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestSource(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(file, []byte("from file"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, file, text string
		wantErr          string
		want             string
		describe         string
	}{
		{name: "both", file: file, text: "x", wantErr: "config source: --config-file and --config-text are mutually exclusive; set one"},
		{name: "neither", want: DefaultText, describe: "built-in default config"},
		{name: "text", text: "inline", want: "inline", describe: "--config-text"},
		{name: "file", file: file, want: "from file", describe: fmt.Sprintf("config file %q", file)},
		{name: "missing file", file: filepath.Join(dir, "nope.yaml"), wantErr: "read config file: open " + filepath.Join(dir, "nope.yaml") + ": no such file or directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src, err := NewSource(tc.file, tc.text)
			if err == nil {
				var data []byte
				data, err = src.Read()
				if err == nil {
					got := []string{string(data), src.String()}
					if diff := cmp.Diff([]string{tc.want, tc.describe}, got); diff != "" {
						t.Errorf("read (-want +got):\n%s", diff)
					}
				}
			}
			if diff := cmp.Diff(tc.wantErr, errString(err)); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestSourceLoad(t *testing.T) {
	t.Parallel()
	cfg, err := Source{}.Load()
	if err != nil || cfg.Plugins[0].Type != "queue-scorer" {
		t.Fatalf("default source: %v", err)
	}
	_, err = Source{Text: header + "plugins: []\n"}.Load()
	if diff := cmp.Diff("--config-text: invalid config (1 problem): plugins: at least one plugin is required", errString(err)); diff != "" {
		t.Errorf("error (-want +got):\n%s", diff)
	}
}

// watchFixture is a config file with a running build, metrics and a
// watcher whose reloads land in got.
type watchFixture struct {
	path    string
	reg     *prometheus.Registry
	metrics *Metrics
	w       *Watcher
	got     chan *Built
	first   *Built
}

func newWatchFixture(t *testing.T, path string) *watchFixture {
	t.Helper()
	f := &watchFixture{path: path, reg: prometheus.NewPedanticRegistry(), got: make(chan *Built, 8)}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	opts := BuildOptions{Registry: testRegistry(t)}
	f.first = mustBuild(t, string(data), opts)
	if f.metrics, err = NewMetrics(f.reg); err != nil {
		t.Fatal(err)
	}
	f.metrics.SetActive(f.first.Hash, time.Now())
	f.w, err = NewWatcher(WatcherOptions{
		Path: path, Build: opts, Current: f.first, Metrics: f.metrics, Log: logr.Discard(),
		OnReload: func(b *Built) { f.got <- b }, Debounce: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// start runs the watcher until the test ends.
func (f *watchFixture) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.w.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start: %v", err)
		}
	})
}

func (f *watchFixture) reloads(result string) float64 {
	return testutil.ToFloat64(f.metrics.reloads.WithLabelValues(result))
}

// writeAtomic replaces path the way editors do: write a temporary file,
// then rename it over the original.
func writeAtomic(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// until repeats action every 50ms until cond holds, for at most 5s; the
// repetition covers writes made before the watch was in place.
func until(t *testing.T, action func(), cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		action()
		time.Sleep(50 * time.Millisecond)
	}
}

const watchV2 = header + `plugins:
- type: prefix-cache-scorer
- type: queue-scorer
`

func TestWatcherReloadsEditedFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(DefaultText), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newWatchFixture(t, path)
	f.start(t)

	var next *Built
	until(t, func() { writeAtomic(t, path, watchV2) }, func() bool {
		select {
		case next = <-f.got:
			return true
		default:
			return false
		}
	})
	if f.w.Active() != next || next.Hash == f.first.Hash {
		t.Fatalf("active build not replaced")
	}
	if !next.Reused("approx-prefix-cache-producer") {
		t.Errorf("the prefix producer was rebuilt across an unrelated change")
	}
	want := fmt.Sprintf(`
# HELP openepp_config_info The active configuration, identified by its content hash.
# TYPE openepp_config_info gauge
openepp_config_info{hash=%q} 1
# HELP openepp_config_reloads_total Configuration reloads by result (success or failure).
# TYPE openepp_config_reloads_total counter
openepp_config_reloads_total{result="failure"} 0
openepp_config_reloads_total{result="success"} 1
`, next.Hash)
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(want), "openepp_config_info", "openepp_config_reloads_total"); err != nil {
		t.Error(err)
	}

	// A broken file keeps the running config, counts a failure and does not
	// call back.
	until(t, func() { writeAtomic(t, path, header+"plugins: [{type: queue-scorer, weight: 2}]\n") },
		func() bool { return f.reloads("failure") >= 1 })
	if f.w.Active() != next {
		t.Errorf("a bad file replaced the running config")
	}
	select {
	case b := <-f.got:
		t.Errorf("callback called for a bad file: %v", b.Hash)
	case <-time.After(100 * time.Millisecond):
	}
	// The failure stays visible until a good file loads.
	failed := func() float64 {
		n, err := testutil.GatherAndCount(f.reg, "openepp_config_last_reload_failed")
		if err != nil || n != 1 {
			t.Fatalf("openepp_config_last_reload_failed: %d series, %v", n, err)
		}
		fams, _ := f.reg.Gather()
		for _, mf := range fams {
			if mf.GetName() == "openepp_config_last_reload_failed" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return -1
	}
	if v := failed(); v != 1 {
		t.Errorf("openepp_config_last_reload_failed = %v after a refused file, want 1", v)
	}
	until(t, func() { writeAtomic(t, path, DefaultText) }, func() bool { return f.reloads("success") >= 2 })
	if v := failed(); v != 0 {
		t.Errorf("openepp_config_last_reload_failed = %v after a good file, want 0", v)
	}
}

// TestWatcherFollowsConfigMapSwap lays the file out as the kubelet does
// (config.yaml → ..data/config.yaml, ..data → ..<version>) and updates it by
// swapping the ..data symlink.
func TestWatcherFollowsConfigMapSwap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	version := 0
	publish := func(content string) {
		version++
		v := fmt.Sprintf("..v%d", version)
		if err := os.Mkdir(filepath.Join(dir, v), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, v, "config.yaml"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(v, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish(DefaultText)
	path := filepath.Join(dir, "config.yaml")
	if err := os.Symlink(filepath.Join("..data", "config.yaml"), path); err != nil {
		t.Fatal(err)
	}
	f := newWatchFixture(t, path)
	f.start(t)
	until(t, func() { publish(watchV2) }, func() bool { return f.reloads("success") >= 1 })
	b := <-f.got
	if len(b.Config.Plugins) == len(f.first.Config.Plugins) {
		t.Errorf("reloaded config looks like the old one")
	}
}

func TestWatcherReload(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(DefaultText), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newWatchFixture(t, path)
	steps := []struct {
		name      string
		content   string // "" removes the file
		wantErr   string
		wantCall  bool
		successes float64
		failures  float64
	}{
		{name: "unchanged content", content: DefaultText, successes: 0},
		{name: "same content, other spelling", content: strings.Replace(DefaultText, "weight: 2", "weight: 2.0", 1)},
		{name: "bad file", content: header + "plugins: [{type: queue-scorer}]\nschedulingProfiles: [{name: a, plugins: [{pluginRef: q, weight: 0}]}]\n",
			wantErr:  `invalid config (2 problems): schedulingProfiles[0].plugins[0].pluginRef: no plugin named "q"; schedulingProfiles[0].plugins[0].weight: must be > 0`,
			failures: 1},
		{name: "unbuildable file", content: header + "plugins: [{type: foo}]\n", wantErr: "not supported by OpenEPP", failures: 2},
		{name: "missing file", wantErr: "read config file: open " + path + ": no such file or directory", failures: 3},
		{name: "good file", content: watchV2, wantCall: true, successes: 1, failures: 3},
		{name: "good file again", content: watchV2, successes: 1, failures: 3},
	}
	// Steps share the file, so they run in order.
	for _, s := range steps {
		if s.content == "" {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		} else {
			writeAtomic(t, path, s.content)
		}
		err := f.w.Reload()
		if s.wantErr == "" && err != nil || s.wantErr != "" && (err == nil || !strings.Contains(err.Error(), s.wantErr)) {
			t.Errorf("%s: error %v, want %q", s.name, err, s.wantErr)
		}
		select {
		case <-f.got:
			if !s.wantCall {
				t.Errorf("%s: unexpected callback", s.name)
			}
		default:
			if s.wantCall {
				t.Errorf("%s: no callback", s.name)
			}
		}
		got := []float64{f.reloads("success"), f.reloads("failure")}
		if diff := cmp.Diff([]float64{s.successes, s.failures}, got); diff != "" {
			t.Errorf("%s: reloads success, failure (-want +got):\n%s", s.name, diff)
		}
	}
}

func TestNewWatcherAndMetricsErrors(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	if _, err := NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := NewMetrics(reg); err == nil {
		t.Errorf("registering the config metrics twice succeeded")
	}
	b := mustBuild(t, DefaultText, BuildOptions{Registry: testRegistry(t)})
	ok := WatcherOptions{Path: "x", Current: b, OnReload: func(*Built) {}, Build: BuildOptions{Registry: testRegistry(t)}}
	for _, mutate := range []func(*WatcherOptions){
		func(o *WatcherOptions) { o.Path = "" },
		func(o *WatcherOptions) { o.Current = nil },
		func(o *WatcherOptions) { o.OnReload = nil },
		func(o *WatcherOptions) { o.Build.Registry = nil },
	} {
		o := ok
		mutate(&o)
		if _, err := NewWatcher(o); err == nil {
			t.Errorf("NewWatcher(%+v) succeeded", o)
		}
	}
	var nilMetrics *Metrics
	nilMetrics.SetActive("x", time.Now()) // must not panic
	nilMetrics.reloaded(true)
}

func TestWatcherStartFailsOnMissingDirectory(t *testing.T) {
	t.Parallel()
	b := mustBuild(t, DefaultText, BuildOptions{Registry: testRegistry(t)})
	w, err := NewWatcher(WatcherOptions{
		Path: filepath.Join(t.TempDir(), "nope", "config.yaml"), Current: b,
		OnReload: func(*Built) {}, Build: BuildOptions{Registry: testRegistry(t)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err == nil {
		t.Errorf("Start succeeded on a missing directory")
	}
}

// TestWatcherSeesChangeBeforeStart: a file changed after the first load but
// before the watch was in place (a ConfigMap update while the EPP starts) is
// loaded when the watch starts, not at the next change.
func TestWatcherSeesChangeBeforeStart(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(DefaultText), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newWatchFixture(t, path)
	writeAtomic(t, path, watchV2)
	f.start(t)
	select {
	case next := <-f.got:
		if next.Hash == f.first.Hash {
			t.Fatal("reloaded the old content")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a change made before the watch started was never loaded")
	}
}
