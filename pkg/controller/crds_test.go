package controller_test

import (
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/openepp/openepp/pkg/controller"
	"github.com/openepp/openepp/pkg/datastore"
	"github.com/openepp/openepp/test/kube"
)

// logSink collects log lines.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) add(prefix, args string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.TrimSpace(prefix+" "+args))
}

func (l *logSink) matching(substr string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range l.lines {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	slices.Sort(out)
	return out
}

// TestWithoutCRDs runs on a control plane of its own that starts with no
// CRD: pool mode is refused clearly, selector mode needs no CRD, and with
// only the InferencePool CRD the objective and rewrite watches are off
// (and say so) while endpoints work.
func TestWithoutCRDs(t *testing.T) {
	t.Parallel()
	bare, err := kube.Start(kube.Options{NoCRDs: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := bare.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	ns := bare.Namespace(t)
	bare.RunningPod(t, ns, "a", "127.0.0.2", model)
	err = controller.Preflight(bare.Config, controller.Options{Namespace: ns, PoolNames: []string{"pool"}, Store: datastore.New()})
	if want := "kubernetes source: the InferencePool CRD (inference.networking.k8s.io/v1) is not installed"; err == nil || err.Error() != want {
		t.Errorf("pool mode without the CRD: error %v, want %q", err, want)
	}
	sel, err := startSourceOn(t, bare, controller.Options{Namespace: ns, Selector: labels.SelectorFromSet(model), TargetPorts: []int{8000}})
	if err != nil {
		t.Fatal(err)
	}
	waitEndpoints(t, sel.store, "a-rank-0=127.0.0.2:8000")

	if err := bare.InstallPoolCRD(); err != nil {
		t.Fatal(err)
	}
	var logs logSink
	pool, err := startSourceOn(t, bare, controller.Options{Namespace: ns, PoolNames: []string{"pool"}, Log: funcr.New(logs.add, funcr.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	bare.Pool(t, ns, "pool", model, 8000)
	waitEndpoints(t, pool.store, "a-rank-0=127.0.0.2:8000")
	want := []string{
		`"level"=0 "msg"="watch disabled: CRD not installed" "kind"="InferenceModelRewrite" "group"="inference.networking.x-k8s.io"`,
		`"level"=0 "msg"="watch disabled: CRD not installed" "kind"="InferenceModelRewrite" "group"="llm-d.ai"`,
		`"level"=0 "msg"="watch disabled: CRD not installed" "kind"="InferenceObjective" "group"="inference.networking.x-k8s.io"`,
		`"level"=0 "msg"="watch disabled: CRD not installed" "kind"="InferenceObjective" "group"="llm-d.ai"`,
	}
	if diff := cmp.Diff(want, logs.matching("watch disabled")); diff != "" {
		t.Errorf("logs (-want +got):\n%s", diff)
	}
	if _, ok := pool.lookups.Of("pool").Objectives.Priority("anything"); ok {
		t.Error("objective found without the CRD")
	}
}
