package controller

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	infv1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"
	"sigs.k8s.io/gateway-api-inference-extension/apix/v1alpha2"
)

// LLMDGroupVersion is llm-d's API group for InferenceObjective and
// InferenceModelRewrite. Its objects have the same shape as GIE's
// inference.networking.x-k8s.io/v1alpha2 ones (reference §2.1), so the types
// below are GIE's structs under their own Go names: a scheme maps each Go
// type to one group, and these must map to llm-d's.
var LLMDGroupVersion = schema.GroupVersion{Group: "llm-d.ai", Version: "v1alpha2"}

// LLMDObjective is an llm-d.ai/v1alpha2 InferenceObjective.
type LLMDObjective v1alpha2.InferenceObjective

// LLMDObjectiveList is a list of LLMDObjective.
type LLMDObjectiveList v1alpha2.InferenceObjectiveList

// LLMDModelRewrite is an llm-d.ai/v1alpha2 InferenceModelRewrite.
type LLMDModelRewrite v1alpha2.InferenceModelRewrite

// LLMDModelRewriteList is a list of LLMDModelRewrite.
type LLMDModelRewriteList v1alpha2.InferenceModelRewriteList

// DeepCopyObject implements runtime.Object.
func (o *LLMDObjective) DeepCopyObject() runtime.Object {
	c := LLMDObjective(*(*v1alpha2.InferenceObjective)(o).DeepCopy())
	return &c
}

// DeepCopyObject implements runtime.Object.
func (o *LLMDObjectiveList) DeepCopyObject() runtime.Object {
	c := LLMDObjectiveList(*(*v1alpha2.InferenceObjectiveList)(o).DeepCopy())
	return &c
}

// DeepCopyObject implements runtime.Object.
func (o *LLMDModelRewrite) DeepCopyObject() runtime.Object {
	c := LLMDModelRewrite(*(*v1alpha2.InferenceModelRewrite)(o).DeepCopy())
	return &c
}

// DeepCopyObject implements runtime.Object.
func (o *LLMDModelRewriteList) DeepCopyObject() runtime.Object {
	c := LLMDModelRewriteList(*(*v1alpha2.InferenceModelRewriteList)(o).DeepCopy())
	return &c
}

// AddToScheme registers every type the reconcilers read: the core types,
// InferencePool v1, GIE's v1alpha2 objectives and rewrites, and llm-d's.
func AddToScheme(s *runtime.Scheme) error {
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, infv1.Install, v1alpha2.Install} {
		if err := add(s); err != nil {
			return fmt.Errorf("scheme: %w", err)
		}
	}
	gv := LLMDGroupVersion
	s.AddKnownTypeWithName(gv.WithKind("InferenceObjective"), &LLMDObjective{})
	s.AddKnownTypeWithName(gv.WithKind("InferenceObjectiveList"), &LLMDObjectiveList{})
	s.AddKnownTypeWithName(gv.WithKind("InferenceModelRewrite"), &LLMDModelRewrite{})
	s.AddKnownTypeWithName(gv.WithKind("InferenceModelRewriteList"), &LLMDModelRewriteList{})
	metav1.AddToGroupVersion(s, gv) // list/watch options for the group
	return nil
}
