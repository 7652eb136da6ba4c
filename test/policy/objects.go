// Package policy holds the properties every installation of the EPP is held
// to, whatever renders it (the kustomize tree under manifests/, the Helm
// chart under charts/openepp): a hardened pod, probes on the gRPC health
// services, the Service's ports, least-privilege RBAC, the downward-API pool
// flags, a drain shorter than the grace period, sized resources. Each check
// takes the rendered objects, typed, and reports through t.
//
// It is test support only; no production package imports it.
package policy

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kruntime "k8s.io/apimachinery/pkg/runtime"
)

// Typed converts a rendered object into its Go API type, failing on fields
// the type does not know (a cheap first schema check before the API server).
func Typed[T any](t testing.TB, u *unstructured.Unstructured) *T {
	t.Helper()
	var v T
	if err := kruntime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, &v, true); err != nil {
		t.Fatalf("%s %q: %v", u.GetKind(), u.GetName(), err)
	}
	return &v
}

// Find returns the single object of kind and name in objs.
func Find(t testing.TB, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	var hit *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() != kind || o.GetName() != name {
			continue
		}
		if hit != nil {
			t.Fatalf("two rendered %s objects named %q", kind, name)
		}
		hit = o
	}
	if hit == nil {
		t.Fatalf("no rendered %s named %q", kind, name)
	}
	return hit
}

// OfKind returns every object of kind in objs.
func OfKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// Container returns the container named name of the Deployment.
func Container(t testing.TB, dep *appsv1.Deployment, name string) corev1.Container {
	t.Helper()
	for _, c := range dep.Spec.Template.Spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("Deployment %q has no container named %s", dep.Name, name)
	return corev1.Container{}
}

// FlagValue finds --name=value or --name value in args.
func FlagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// PtrValue is *p, or the zero value for nil.
func PtrValue[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
