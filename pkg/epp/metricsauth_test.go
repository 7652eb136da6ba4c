package epp

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

type fakeAuthn struct {
	ok  bool
	err error
}

func (f fakeAuthn) AuthenticateRequest(*http.Request) (*authenticator.Response, bool, error) {
	if !f.ok {
		return nil, false, f.err
	}
	return &authenticator.Response{User: &user.DefaultInfo{Name: "system:serviceaccount:mon:prometheus"}}, true, nil
}

type fakeAuthz struct {
	allow bool
	err   error
}

func (f fakeAuthz) Authorize(context.Context, authorizer.Attributes) (authorizer.Decision, string, error) {
	if f.err != nil {
		return authorizer.DecisionNoOpinion, "", f.err
	}
	if f.allow {
		return authorizer.DecisionAllow, "", nil
	}
	return authorizer.DecisionNoOpinion, "no rule", nil
}

// TestMetricsGuardStatuses: the caller's faults are 401 and 403, the API
// server's a 503; the real reviews are exercised in test/eppkube.
func TestMetricsGuardStatuses(t *testing.T) {
	t.Parallel()
	page := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("page")) })
	tests := []struct {
		name  string
		authn fakeAuthn
		authz fakeAuthz
		code  int
		body  string
	}{
		{name: "no token", authn: fakeAuthn{}, code: 401, body: "unauthorized"},
		{name: "token refused", authn: fakeAuthn{err: errors.New("[invalid bearer token, token lookup failed]")}, code: 401},
		{name: "token review failed", authn: fakeAuthn{err: errors.New("connection refused")}, code: 503, body: "cannot verify the token"},
		{name: "not granted", authn: fakeAuthn{ok: true}, code: 403,
			body: "forbidden: system:serviceaccount:mon:prometheus may not get /metrics (grant nonResourceURLs in a ClusterRole)"},
		{name: "access review failed", authn: fakeAuthn{ok: true}, authz: fakeAuthz{err: errors.New("timeout")}, code: 503},
		{name: "granted", authn: fakeAuthn{ok: true}, authz: fakeAuthz{allow: true}, code: 200, body: "page"},
	}
	for _, tc := range tests {
		g := &metricsGuard{authn: tc.authn, authz: tc.authz, next: page, log: logr.Discard()}
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.body) {
			t.Errorf("%s: %d %q, want %d containing %q", tc.name, rec.Code, rec.Body.String(), tc.code, tc.body)
		}
	}
}
