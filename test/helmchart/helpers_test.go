package helmchart

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/openepp/openepp/test/policy"
)

func find(t testing.TB, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	return policy.Find(t, objs, kind, name)
}

// deployment is the rendered EPP Deployment and its epp container.
func deployment(t testing.TB, objs []*unstructured.Unstructured) (*appsv1.Deployment, corev1.Container) {
	t.Helper()
	dep := policy.Typed[appsv1.Deployment](t, find(t, objs, "Deployment", eppName))
	return dep, policy.Container(t, dep, "epp")
}
