package epp

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// WaitReady polls the gRPC readiness service at healthAddr until it reports
// SERVING or ctx ends. Listeners are bound before endpoint sources have
// synced, so callers of Run (tests, embedders) use it before sending
// traffic, as a Kubernetes readiness probe would.
func WaitReady(ctx context.Context, healthAddr string) error {
	conn, err := grpc.NewClient(healthAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("health client: %w", err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	for {
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "readiness"})
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("epp not ready: %w (last: %v %v)", ctx.Err(), resp.GetStatus(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
