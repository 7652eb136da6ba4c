package controller

import (
	"context"
	"fmt"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// PreflightPeers checks that this EPP may list and watch the EndpointSlices
// SetupPeers reads. Without the RBAC rule the watch would never sync and
// the manager would give up minutes later with a cache-sync timeout; asked
// first (a SelfSubjectAccessReview, which every authenticated user may
// create), the EPP refuses to start and says which rule is missing.
func PreflightPeers(cfg *rest.Config, o PeerOptions) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("replica peers: kubernetes client: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, verb := range []string{"list", "watch"} {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: o.Namespace, Verb: verb, Group: discoveryv1.GroupName, Resource: "endpointslices",
			}}}
		got, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("replica peers: check access to endpointslices: %w", err)
		}
		if !got.Status.Allowed {
			return fmt.Errorf("replica peers: this EPP may not %s endpointslices.%s in namespace %q, which --replica-sync-service %q needs: "+
				"grant it in the EPP's Role, as manifests/components/active-active does", verb, discoveryv1.GroupName, o.Namespace, o.Service)
		}
	}
	return nil
}
