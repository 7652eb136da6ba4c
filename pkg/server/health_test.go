package server_test

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/openepp/openepp/pkg/datastore"
	"github.com/openepp/openepp/pkg/server"
)

// healthServices are the service names probes use, with the unknown one.
var healthServices = []string{"liveness", "readiness", server.ExtProcService, "", "inference-extension", "no-such-service"}

// startHealth serves h on its own plaintext port (the --grpc-health-port
// server) and returns a client.
func startHealth(t *testing.T, h *server.Health) healthpb.HealthClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveHealth(t, server.NewHealthServer(h), lis, insecure.NewCredentials())
}

func serveHealth(t *testing.T, g *grpc.Server, lis net.Listener, creds credentials.TransportCredentials) healthpb.HealthClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- server.Serve(ctx, g, lis, time.Second) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return healthpb.NewHealthClient(conn)
}

// statuses checks every service once.
func statuses(t *testing.T, c healthpb.HealthClient) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, svc := range healthServices {
		resp, err := c.Check(testCtx(t), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("check %q: %v", svc, err)
		}
		out[svc] = resp.GetStatus().String()
	}
	return out
}

func wantStatuses(ready string) map[string]string {
	return map[string]string{
		"liveness": "SERVING", "readiness": ready, server.ExtProcService: ready, "": ready,
		"inference-extension": ready, "no-such-service": "SERVICE_UNKNOWN",
	}
}

// TestHealth checks grpc.health.v1 on the health port: liveness always
// serving, the readiness names following the datastore's first sync.
func TestHealth(t *testing.T) {
	t.Parallel()
	store := datastore.New()
	c := startHealth(t, &server.Health{Ready: store.Ready})
	if diff := cmp.Diff(wantStatuses("NOT_SERVING"), statuses(t, c)); diff != "" {
		t.Errorf("before sync (-want +got):\n%s", diff)
	}
	store.Replace("test", threeEndpoints())
	if diff := cmp.Diff(wantStatuses("SERVING"), statuses(t, c)); diff != "" {
		t.Errorf("after sync (-want +got):\n%s", diff)
	}
	list, err := c.List(testCtx(t), &healthpb.HealthListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for svc, st := range list.GetStatuses() {
		got[svc] = st.GetStatus().String()
	}
	want := wantStatuses("SERVING")
	delete(want, "no-such-service")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
}

// TestHealthOnExtProcPort checks the health service registered next to
// ext_proc on the TLS port, as Envoy's cluster health check reaches it.
func TestHealthOnExtProcPort(t *testing.T) {
	t.Parallel()
	store := datastore.New()
	srv := server.New(store, newScheduler(t, nil, nil), server.Options{})
	cfg, err := server.TLSConfig("", false, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	g := srv.NewGRPCServer(server.GRPCOptions{TLS: cfg, MaxRecvMsgSize: 4 << 20, MaxSendMsgSize: 4 << 20, Health: &server.Health{Ready: store.Ready}})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	creds := credentials.NewTLS(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) //nolint:gosec // self-signed test certificate
	c := serveHealth(t, g, lis, creds)
	if diff := cmp.Diff(wantStatuses("NOT_SERVING"), statuses(t, c)); diff != "" {
		t.Errorf("before sync (-want +got):\n%s", diff)
	}
	store.Replace("test", nil)
	if diff := cmp.Diff(wantStatuses("SERVING"), statuses(t, c)); diff != "" {
		t.Errorf("after sync of an empty pool (-want +got):\n%s", diff)
	}
}

// TestHealthWatch checks that Watch sends the current status at once and
// then each change, and SERVICE_UNKNOWN for an unknown service.
func TestHealthWatch(t *testing.T) {
	t.Parallel()
	store := datastore.New()
	c := startHealth(t, &server.Health{Ready: store.Ready, WatchInterval: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	w, err := c.Watch(ctx, &healthpb.HealthCheckRequest{Service: "readiness"})
	if err != nil {
		t.Fatal(err)
	}
	next := func() string {
		t.Helper()
		resp, err := w.Recv()
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		return resp.GetStatus().String()
	}
	if got := next(); got != "NOT_SERVING" {
		t.Fatalf("first status %s, want NOT_SERVING", got)
	}
	store.Replace("test", threeEndpoints())
	if got := next(); got != "SERVING" {
		t.Fatalf("after sync %s, want SERVING", got)
	}
	store.DeleteSource("test")
	if got := next(); got != "NOT_SERVING" {
		t.Fatalf("after the source went away %s, want NOT_SERVING", got)
	}
	u, err := c.Watch(ctx, &healthpb.HealthCheckRequest{Service: "no-such-service"})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := u.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVICE_UNKNOWN {
		t.Errorf("unknown service: %v %v, want SERVICE_UNKNOWN", resp.GetStatus(), err)
	}
}
