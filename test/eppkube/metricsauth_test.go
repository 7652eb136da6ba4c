package eppkube_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestMetricsNeedAnAuthorizedToken: in Kubernetes mode the metrics port
// answers only callers the API server authenticates (TokenReview) and
// authorizes for the path (SubjectAccessReview), as upstream's
// --metrics-endpoint-auth does by default; false opens it.
func TestMetricsNeedAnAuthorizedToken(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	env.Pool(t, ns, "pool", map[string]string{"app": "sim"}, port)
	in := startEPP(t, ns, "--pool-name", "pool")

	if code, body := in.getMetrics(t, "/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("no token: status %d (%s), want 401", code, body)
	}
	if code, body := in.getMetrics(t, "/metrics", "not-a-token"); code != http.StatusUnauthorized {
		t.Errorf("a token the API server does not know: status %d (%s), want 401", code, body)
	}
	stranger := env.ServiceAccountToken(t, ns, "stranger")
	if code, body := in.getMetrics(t, "/metrics", stranger); code != http.StatusForbidden {
		t.Errorf("a service account without the grant: status %d (%s), want 403", code, body)
	}
	if code, _ := in.getMetrics(t, "/debug/pprof/", stranger); code != http.StatusForbidden {
		t.Errorf("pprof for a service account without the grant: status %d, want 403", code)
	}
	reader := readerToken(t)
	if code, page := in.getMetrics(t, "/metrics", reader); code != http.StatusOK || !strings.Contains(page, "inference_extension_info") {
		t.Errorf("an authorized service account: status %d, page without inference_extension_info", code)
	}
	if code, _ := in.getMetrics(t, "/debug/pprof/", reader); code != http.StatusOK {
		t.Errorf("pprof for an authorized service account: status %d", code)
	}

	open := startEPP(t, ns, "--pool-name", "pool", "--metrics-endpoint-auth=false")
	if code, _ := open.getMetrics(t, "/metrics", ""); code != http.StatusOK {
		t.Errorf("--metrics-endpoint-auth=false: status %d without a token, want 200", code)
	}
}
