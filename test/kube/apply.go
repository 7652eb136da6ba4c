package kube

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// fieldOwner is the server-side apply manager of the objects tests apply.
const fieldOwner = "openepp-test"

// DryRunApply server-side applies obj with dryRun=All, as `kubectl apply
// --server-side --dry-run=server` would: the API server runs defaulting,
// schema validation (OpenAPI, CRD structural schema, CEL rules) and
// admission, then stores nothing.
func (e *Env) DryRunApply(ctx context.Context, obj *unstructured.Unstructured) error {
	return e.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj.DeepCopy()),
		client.DryRunAll, client.ForceOwnership, client.FieldOwner(fieldOwner))
}

// Apply server-side applies obj for real.
func (e *Env) Apply(ctx context.Context, obj *unstructured.Unstructured) error {
	return e.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj.DeepCopy()),
		client.ForceOwnership, client.FieldOwner(fieldOwner))
}

// EnsureNamespace creates ns unless it exists (objects applied, even as a
// dry run, into a missing namespace are rejected before validation).
func (e *Env) EnsureNamespace(ctx context.Context, ns string) error {
	err := e.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}
