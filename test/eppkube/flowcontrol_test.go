package eppkube_test

import (
	"context"
	"regexp"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/gateway-api-inference-extension/apix/v1alpha2"

	"github.com/openepp/openepp/pkg/extproc"
)

// oneAtATime queues every request while one is in flight.
const oneAtATime = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
featureGates: [flowControl]
plugins:
- type: concurrency-detector
  parameters: {maxConcurrency: 1}
- type: random-picker
saturationDetector: {pluginRef: concurrency-detector}
schedulingProfiles:
- name: default
  plugins: [{pluginRef: random-picker}]
`

var queuedLine = regexp.MustCompile(`(?m)^inference_extension_flow_control_queue_size\{[^}]*priority="(-?\d+)"[^}]*\} (\S+)$`)

// queuedAt sums the flow-control queue gauge of one priority.
func (in *instance) queuedAt(t *testing.T, priority int) int {
	t.Helper()
	n := 0
	for _, m := range queuedLine.FindAllStringSubmatch(in.metricsPage(t), -1) {
		if m[1] == strconv.Itoa(priority) {
			v, _ := strconv.ParseFloat(m[2], 64)
			n += int(v)
		}
	}
	return n
}

// TestFlowControlPriorityFromObjectives: with flow control, the priority an
// InferenceObjective gives decides who leaves the queue first. A sheddable
// request (priority -1) is not refused under saturation but waits, and a
// critical one (priority 3) that arrives after it still goes first.
func TestFlowControlPriorityFromObjectives(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	env.Pool(t, ns, "pool", model, port)
	ip := nextIP()
	simulator(t, ip, port)
	env.RunningPod(t, ns, "a", ip, model)
	in := startEPP(t, ns, "--pool-name", "pool", "--config-text", oneAtATime)
	in.waitRoutable(t, hostPort(ip, port), true)
	in.objectives(t, ns, map[string]int{"batch": -1, "critical": 3})
	request := func(objective string) extproc.Request {
		return completionRequest(`{"model":"sim-model","prompt":"hi"}`, "x-gateway-inference-objective", objective)
	}

	held, err := in.client.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d, err := held.SendRequest(context.Background(), request("batch")); err != nil || d.Immediate != nil {
		t.Fatalf("first request not routed: %v %+v", err, d)
	}
	// Each request reports its routing answer before its stream ends, and
	// with one slot the next cannot be released before that: the order
	// received is the order released (a RoundTrip would report after its
	// stream closed, when the next one may already have been answered).
	order := make(chan string, 2)
	send := func(objective string) {
		s, err := in.client.Open(context.Background())
		if err != nil {
			order <- objective + ": " + err.Error()
			return
		}
		defer s.Close()
		d, err := s.SendRequest(context.Background(), request(objective))
		switch {
		case err != nil:
			order <- objective + ": " + err.Error()
		case d.Immediate != nil:
			order <- objective + ": " + strconv.Itoa(d.Immediate.Status) + " " + string(d.Immediate.Body)
		default:
			order <- objective
		}
	}
	go send("batch")
	eventually(t, "the sheddable request to wait instead of being shed", func() bool { return in.queuedAt(t, -1) == 1 })
	go send("critical")
	eventually(t, "the critical request to wait behind the one in flight", func() bool { return in.queuedAt(t, 3) == 1 })
	_ = held.Close() // the request in flight ends; its place frees up
	var got []string
	for range 2 {
		select {
		case o := <-order:
			got = append(got, o)
		case <-time.After(waitFor):
			t.Fatalf("released so far: %v", got)
		}
	}
	if got[0] != "critical" || got[1] != "batch" {
		t.Errorf("release order %v, want [critical batch]", got)
	}
}

// objectives creates an InferenceObjective of each priority in the pool
// and waits until the EPP routes under every one of them.
func (in *instance) objectives(t *testing.T, ns string, priorities map[string]int) {
	t.Helper()
	for name, prio := range priorities {
		env.Create(t, &v1alpha2.InferenceObjective{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       v1alpha2.InferenceObjectiveSpec{Priority: ptr.To(prio), PoolRef: v1alpha2.PoolObjectReference{Name: "pool"}},
		})
	}
	eventually(t, "the objectives to be loaded", func() bool {
		for o := range priorities {
			req := completionRequest(`{"model":"sim-model","prompt":"hi"}`, "x-gateway-inference-objective", o)
			if d, err := in.client.RoundTrip(context.Background(), req); err != nil || d.Immediate != nil {
				t.Fatalf("%s request on an idle pool: %v %+v", o, err, d)
			}
		}
		page := in.metricsPage(t)
		for _, prio := range priorities {
			if !hasLine(page, `inference_objective_request_total{model_name="sim-model",priority="`+strconv.Itoa(prio)+`"`) {
				return false
			}
		}
		return true
	})
}
