package discovery

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// llmdFile is an endpoints file as llm-d's docs write it.
const llmdFile = `endpoints:
  - name: vllm-0
    address: 10.0.0.1
    port: "8080"
    labels:
      model: llama-3-8b
      llm-d.ai/role: decode
  - name: vllm-1
    namespace: serving
    address: 10.0.0.2
    port: "8080"
    metricsHost: 10.0.0.2:9090
    labels:
      llm-d.ai/role: prefill
`

func TestLoadFileLLMDFormat(t *testing.T) {
	t.Parallel()
	path := writeFile(t, filepath.Join(t.TempDir(), "eps.yaml"), llmdFile)
	got, err := loadFile(path, DefaultNamespace)
	if err != nil {
		t.Fatal(err)
	}
	want := []endpoint.Spec{
		{Name: "vllm-0", Namespace: "default", Address: "10.0.0.1", Port: 8080,
			Labels: map[string]string{"model": "llama-3-8b", "llm-d.ai/role": "decode"}},
		{Name: "vllm-1", Namespace: "serving", Address: "10.0.0.2", Port: 8080, MetricsPort: 9090,
			Labels: map[string]string{"llm-d.ai/role": "prefill"}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
	// --endpoints-file reads the same file but leaves the namespace unset.
	got, err = LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Namespace != "" {
		t.Errorf("--endpoints-file gave namespace %q to an entry without one", got[0].Namespace)
	}
}

func TestFilePluginParams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, params string
		want         string // "" means valid
	}{
		{name: "llm-d's", params: `{"path": "/etc/llm-d/endpoints.yaml", "watchFile": true}`},
		{name: "path only", params: `{"path": "eps.yaml"}`},
		{name: "no parameters", params: ``, want: "path: required"},
		{name: "empty path", params: `{"path": "", "watchFile": true}`, want: "path: required"},
		{name: "unknown parameter", params: `{"path": "eps.yaml", "watch": true}`, want: `parameters: json: unknown field "watch"`},
		{name: "wrong type", params: `{"path": "eps.yaml", "watchFile": "yes"}`, want: "parameters: json: cannot unmarshal string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := FilePluginFactory("files", json.RawMessage(tc.params), nil)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := p.TypedName(); got != (scheduler.TypedName{Type: FilePluginType, Name: "files"}) {
					t.Errorf("TypedName() = %v", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v does not mention %q", err, tc.want)
			}
		})
	}
}

// published records what a discovery plugin publishes.
type published struct {
	mu   sync.Mutex
	sets [][]endpoint.Spec
}

func (p *published) publish(specs []endpoint.Spec) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sets = append(p.sets, specs)
}

// names is the last published set's names, and how many sets there were.
func (p *published) names() (string, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.sets) == 0 {
		return "", 0
	}
	var names []string
	for _, s := range p.sets[len(p.sets)-1] {
		names = append(names, s.Namespace+"/"+s.Name)
	}
	return strings.Join(names, ","), len(p.sets)
}

// discover runs a file-discovery plugin on path until the test ends.
func discover(t *testing.T, path string, watch bool) *published {
	t.Helper()
	params, _ := json.Marshal(FilePluginParams{Path: path, WatchFile: watch})
	p, err := FilePluginFactory("files", params, &scheduler.Handle{Log: testr.New(t), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	out := &published{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.(scheduler.Discovery).Discover(ctx, out.publish) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Discover: %v", err)
		}
	})
	return out
}

// TestFilePluginWatchFile: with watchFile the file is reloaded (entries
// upserted, absent ones deleted); without it, it is read once. The watched
// instance is the witness that the change was seen.
func TestFilePluginWatchFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := writeFile(t, filepath.Join(dir, "eps.yaml"), llmdFile)
	watched, once := discover(t, path, true), discover(t, path, false)
	waitFor(t, "initial loads", func() bool {
		_, w := watched.names()
		_, o := once.names()
		return w == 1 && o == 1
	})

	// vllm-0 changes its labels, vllm-1 leaves, vllm-2 arrives; written in
	// place, as llm-d's docs describe.
	writeFile(t, path, `endpoints:
  - {name: vllm-0, address: 10.0.0.1, port: "8080", labels: {llm-d.ai/role: prefill}}
  - {name: vllm-2, address: 10.0.0.3, port: 8080}
`)
	waitFor(t, "reload", func() bool {
		names, _ := watched.names()
		return names == "default/vllm-0,default/vllm-2"
	})
	watched.mu.Lock()
	last := watched.sets[len(watched.sets)-1]
	watched.mu.Unlock()
	if got := last[0].Labels["llm-d.ai/role"]; got != "prefill" {
		t.Errorf("vllm-0's role = %q after the reload, want prefill", got)
	}
	time.Sleep(300 * time.Millisecond) // past the reload debounce
	if names, n := once.names(); n != 1 || names != "default/vllm-0,serving/vllm-1" {
		t.Errorf("watchFile=false published %d sets, last %q; want the first file only", n, names)
	}

	// A broken file keeps the last good set; its fix is picked up.
	writeFile(t, path, "endpoints:\n  - {name: vllm-0, address: 10.0.0.1, port: \"http\"}\n")
	time.Sleep(300 * time.Millisecond)
	if names, _ := watched.names(); names != "default/vllm-0,default/vllm-2" {
		t.Errorf("a broken file changed the endpoints to %q", names)
	}
	writeFile(t, path, "endpoints: []\n")
	waitFor(t, "emptied", func() bool { names, n := watched.names(); return names == "" && n > 2 })
}

func TestFilePluginFailsOnBrokenFile(t *testing.T) {
	t.Parallel()
	path := writeFile(t, filepath.Join(t.TempDir(), "eps.yaml"), "endpoints:\n  - {name: a, address: 10.0.0.1, port: \"80x\"}\n")
	for _, watch := range []bool{false, true} {
		params, _ := json.Marshal(FilePluginParams{Path: path, WatchFile: watch})
		p, err := FilePluginFactory("files", params, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = p.(scheduler.Discovery).Discover(context.Background(), func([]endpoint.Spec) { t.Error("published a broken file") })
		if err == nil || !strings.Contains(err.Error(), `endpoints[0] (a): port "80x" is not a number`) {
			t.Errorf("watchFile=%v: Discover error = %v, want the bad port", watch, err)
		}
	}
}

func writeFile(t *testing.T, path, text string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
