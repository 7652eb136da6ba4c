package server_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/scheduler"
)

// refuseProfile fails scheduling as a plugin does when the request names
// something the configuration lacks (header-profile-handler's unknown
// profile).
type refuseProfile struct{}

func (refuseProfile) TypedName() scheduler.TypedName {
	return scheduler.TypedName{Type: "refuse-profile", Name: "refuse-profile"}
}

func (refuseProfile) Admit(_ context.Context, _ *scheduler.State, req *scheduler.Request, _ []*endpoint.Endpoint) error {
	if v := req.Header("x-profile"); v != "" {
		return fmt.Errorf("header x-profile names profile %q, which is not configured: %w", v, scheduler.ErrInvalidRequest)
	}
	return nil
}

// TestInvalidRequestIs400: scheduler.ErrInvalidRequest, whoever reports it,
// is answered with 400 and its reason, not 429/503 (a retry cannot help).
func TestInvalidRequestIs400(t *testing.T) {
	t.Parallel()
	h := start(t, setup{plugins: []scheduler.Plugin{refuseProfile{}}})
	d := h.exchange(t, post("/v1/completions", completion("hi"), "x-profile", "nope"))
	requireImmediate(t, d, http.StatusBadRequest, "bad-request", `names profile "nope", which is not configured`)
	if d := h.exchange(t, post("/v1/completions", completion("hi"))); d.Immediate != nil {
		t.Errorf("without the header: immediate %+v, want routed", d.Immediate)
	}
}
