package server

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// ExtProcService is the gRPC service name Envoy health-checks.
const ExtProcService = "envoy.service.ext_proc.v3.ExternalProcessor"

// Health implements grpc.health.v1.Health for the EPP's services:
// "liveness" is always SERVING; "readiness", the ext_proc service name, ""
// and "inference-extension" (the name GIE's chart probes) follow Ready.
type Health struct {
	healthpb.UnimplementedHealthServer
	// Ready reports whether the EPP should receive traffic: endpoints
	// synced, leader (when HA is on), not draining.
	Ready func() bool
	// WatchInterval is how often Watch re-evaluates; default 250ms.
	WatchInterval time.Duration
}

func (h *Health) status(service string) (healthpb.HealthCheckResponse_ServingStatus, bool) {
	switch service {
	case "liveness":
		return healthpb.HealthCheckResponse_SERVING, true
	case "readiness", ExtProcService, "", "inference-extension":
		if h.Ready() {
			return healthpb.HealthCheckResponse_SERVING, true
		}
		return healthpb.HealthCheckResponse_NOT_SERVING, true
	}
	return healthpb.HealthCheckResponse_SERVICE_UNKNOWN, false
}

// Check answers one probe.
func (h *Health) Check(_ context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	st, _ := h.status(req.GetService())
	return &healthpb.HealthCheckResponse{Status: st}, nil
}

// List reports every known service's status.
func (h *Health) List(_ context.Context, _ *healthpb.HealthListRequest) (*healthpb.HealthListResponse, error) {
	out := map[string]*healthpb.HealthCheckResponse{}
	for _, svc := range []string{"liveness", "readiness", ExtProcService, "", "inference-extension"} {
		st, _ := h.status(svc)
		out[svc] = &healthpb.HealthCheckResponse{Status: st}
	}
	return &healthpb.HealthListResponse{Statuses: out}, nil
}

// Watch streams the status whenever it changes.
func (h *Health) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	every := h.WatchInterval
	if every <= 0 {
		every = 250 * time.Millisecond
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	last := healthpb.HealthCheckResponse_ServingStatus(-1)
	for {
		st, _ := h.status(req.GetService())
		if st != last {
			if err := stream.Send(&healthpb.HealthCheckResponse{Status: st}); err != nil {
				return status.Errorf(codes.Canceled, "health watch: %v", err)
			}
			last = st
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-tick.C:
		}
	}
}
