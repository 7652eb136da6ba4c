package kube

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	infv1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"
)

// callTimeout bounds each API call of a helper.
const callTimeout = 10 * time.Second

func callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), callTimeout)
}

var nonName = regexp.MustCompile(`[^a-z0-9-]+`)

// Namespace creates a namespace for t, named after it. Namespaces are not
// deleted: a bare API server has no controller to finish the deletion, and
// the whole control plane goes away with the test package.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	base := strings.Trim(nonName.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	name := fmt.Sprintf("%.50s-%06x", base, rand.IntN(1<<24))
	e.Create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	return name
}

// Create creates obj.
func (e *Env) Create(t testing.TB, obj client.Object) {
	t.Helper()
	ctx, cancel := callCtx()
	defer cancel()
	if err := e.Client.Create(ctx, obj); err != nil {
		t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
}

// Delete deletes obj (which needs only its name and namespace).
func (e *Env) Delete(t testing.TB, obj client.Object) {
	t.Helper()
	ctx, cancel := callCtx()
	defer cancel()
	if err := e.Client.Delete(ctx, obj); err != nil {
		t.Fatalf("delete %T %s: %v", obj, obj.GetName(), err)
	}
}

// Update applies mutate to the current obj (read into obj by its name) and
// writes it back, retrying on conflicts.
func (e *Env) Update(t testing.TB, obj client.Object, mutate func()) {
	t.Helper()
	e.update(t, obj, mutate, false)
}

// UpdateStatus is Update through the status subresource.
func (e *Env) UpdateStatus(t testing.TB, obj client.Object, mutate func()) {
	t.Helper()
	e.update(t, obj, mutate, true)
}

func (e *Env) update(t testing.TB, obj client.Object, mutate func(), status bool) {
	t.Helper()
	ctx, cancel := callCtx()
	defer cancel()
	key := types.NamespacedName{Namespace: obj.GetNamespace(), Name: obj.GetName()}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := e.Client.Get(ctx, key, obj); err != nil {
			return err
		}
		mutate()
		if status {
			return e.Client.Status().Update(ctx, obj)
		}
		return e.Client.Update(ctx, obj)
	})
	if err != nil {
		t.Fatalf("update %T %s: %v", obj, key, err)
	}
}

// Pool creates an InferencePool selecting matchLabels on ports.
func (e *Env) Pool(t testing.TB, ns, name string, matchLabels map[string]string, ports ...int) *infv1.InferencePool {
	t.Helper()
	p := &infv1.InferencePool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	SetPoolSpec(p, matchLabels, ports...)
	p.Spec.EndpointPickerRef = infv1.EndpointPickerRef{Name: "epp", Kind: "Service", Port: &infv1.Port{Number: 9002}}
	e.Create(t, p)
	return p
}

// SetPoolSpec sets the pool's selector and target ports.
func SetPoolSpec(p *infv1.InferencePool, matchLabels map[string]string, ports ...int) {
	p.Spec.Selector.MatchLabels = map[infv1.LabelKey]infv1.LabelValue{}
	for k, v := range matchLabels {
		p.Spec.Selector.MatchLabels[infv1.LabelKey(k)] = infv1.LabelValue(v)
	}
	p.Spec.TargetPorts = nil
	for _, port := range ports {
		p.Spec.TargetPorts = append(p.Spec.TargetPorts, infv1.Port{Number: infv1.PortNumber(port)})
	}
}

// Pod creates a Pod with labels and annotations; it is not running until
// SetPodStatus gives it an IP and a Ready condition.
func (e *Env) Pod(t testing.TB, ns, name string, labels, annotations map[string]string) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "model-server", Image: "model-server:test"}}},
	}
	e.Create(t, p)
	return p
}

// RunningPod creates a Pod and makes it Running and Ready at ip.
func (e *Env) RunningPod(t testing.TB, ns, name, ip string, labels map[string]string) *corev1.Pod {
	t.Helper()
	p := e.Pod(t, ns, name, labels, nil)
	e.SetPodStatus(t, p, ip, true)
	return p
}

// SetPodStatus plays the kubelet: the Pod runs at ip with its Ready
// condition set to ready.
func (e *Env) SetPodStatus(t testing.TB, p *corev1.Pod, ip string, ready bool) {
	t.Helper()
	cond := corev1.ConditionFalse
	if ready {
		cond = corev1.ConditionTrue
	}
	e.UpdateStatus(t, p, func() {
		p.Status.Phase = corev1.PodRunning
		p.Status.PodIP = ip
		p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: cond, LastTransitionTime: metav1.Now()}}
	})
}

// Bind plays the scheduler: it binds the Pod to node through the
// pods/binding subresource, the only way to set spec.nodeName after the
// Pod was created. The node need not exist.
func (e *Env) Bind(t testing.TB, p *corev1.Pod, node string) {
	t.Helper()
	ctx, cancel := callCtx()
	defer cancel()
	b := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name},
		Target:     corev1.ObjectReference{Kind: "Node", Name: node},
	}
	if err := e.Client.SubResource("binding").Create(ctx, p, b); err != nil {
		t.Fatalf("bind pod %s to node %s: %v", p.Name, node, err)
	}
}
