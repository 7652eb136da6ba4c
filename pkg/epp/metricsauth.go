package epp

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	authenticationv1 "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationv1 "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
)

// metricsGuard puts the metrics port behind the Kubernetes API server, as
// upstream's --metrics-endpoint-auth does: a caller needs a bearer token
// the API server accepts (TokenReview) for a subject allowed to GET the
// path (SubjectAccessReview on a nonResourceURLs rule). Answers are cached
// (a minute for tokens, five minutes for grants, 30 s for denials), so
// scrapes rarely cost a review. Unlike controller-runtime's filter, which
// answers 500 to a bad token, a caller's fault is a 401 or 403 and only
// the API server's is a 503.
type metricsGuard struct {
	authn authenticator.Request
	authz authorizer.Authorizer
	next  http.Handler
	log   logr.Logger
}

// reviewRetry spaces the retries of a failed review (about 8 s in all).
var reviewRetry = wait.Backoff{Duration: 500 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Steps: 5}

func newMetricsGuard(next http.Handler, cfg *rest.Config, log logr.Logger) (*metricsGuard, error) {
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("metrics authentication: %w", err)
	}
	tokens, err := authenticationv1.NewForConfigAndClient(cfg, client)
	if err != nil {
		return nil, fmt.Errorf("metrics authentication: %w", err)
	}
	access, err := authorizationv1.NewForConfigAndClient(cfg, client)
	if err != nil {
		return nil, fmt.Errorf("metrics authentication: %w", err)
	}
	authn, _, err := authenticatorfactory.DelegatingAuthenticatorConfig{
		Anonymous:                &apiserver.AnonymousAuthConfig{Enabled: false},
		CacheTTL:                 time.Minute,
		TokenAccessReviewClient:  tokens,
		TokenAccessReviewTimeout: 10 * time.Second,
		WebhookRetryBackoff:      &reviewRetry,
	}.New()
	if err != nil {
		return nil, fmt.Errorf("metrics authentication: %w", err)
	}
	authz, err := authorizerfactory.DelegatingAuthorizerConfig{
		SubjectAccessReviewClient: access,
		AllowCacheTTL:             5 * time.Minute,
		DenyCacheTTL:              30 * time.Second,
		WebhookRetryBackoff:       &reviewRetry,
	}.New()
	if err != nil {
		return nil, fmt.Errorf("metrics authorization: %w", err)
	}
	return &metricsGuard{authn: authn, authz: authz, next: next, log: log}, nil
}

// invalidToken is how k8s.io/apiserver's bearer-token authenticator says
// the API server did not accept the token (its error is not exported).
const invalidToken = "invalid bearer token"

func (g *metricsGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	res, ok, err := g.authn.AuthenticateRequest(r)
	switch {
	case err != nil && !strings.Contains(err.Error(), invalidToken):
		g.log.Error(err, "cannot review a metrics caller's token with the API server")
		http.Error(w, "cannot verify the token with the Kubernetes API server", http.StatusServiceUnavailable)
		return
	case err != nil || !ok:
		g.log.V(1).Info("metrics request without a valid bearer token", "path", r.URL.Path)
		http.Error(w, "unauthorized: send a service account bearer token", http.StatusUnauthorized)
		return
	}
	user := res.User.GetName()
	decision, reason, err := g.authz.Authorize(r.Context(), authorizer.AttributesRecord{
		User: res.User, Verb: strings.ToLower(r.Method), Path: r.URL.Path})
	switch {
	case err != nil:
		g.log.Error(err, "cannot review a metrics caller's access with the API server", "user", user)
		http.Error(w, "cannot verify access with the Kubernetes API server", http.StatusServiceUnavailable)
	case decision != authorizer.DecisionAllow:
		g.log.V(1).Info("metrics request denied", "user", user, "path", r.URL.Path, "reason", reason)
		http.Error(w, fmt.Sprintf("forbidden: %s may not %s %s (grant nonResourceURLs in a ClusterRole)",
			user, strings.ToLower(r.Method), r.URL.Path), http.StatusForbidden)
	default:
		g.next.ServeHTTP(w, r)
	}
}
