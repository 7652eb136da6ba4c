package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
)

// GRPCOptions configure the ext_proc listener.
type GRPCOptions struct {
	// TLS is nil for plaintext.
	TLS *tls.Config
	// MaxRecvMsgSize and MaxSendMsgSize bound gRPC messages; 0 keeps gRPC's
	// defaults (4 MiB received, unlimited sent).
	MaxRecvMsgSize int
	MaxSendMsgSize int
	// Health, when set, is also served on the ext_proc port.
	Health *Health
}

// streamWorkers is how many goroutines serve ext_proc streams; see
// TransportOptions.
const streamWorkers = 64

// TransportOptions are the gRPC server options of the ext_proc listener
// that shape the transport, not the service. Benchmarks give their no-op
// floor servers the same ones, so that a comparison measures the EPP's own
// work and not a difference in transport tuning.
//
// Stream workers: gRPC otherwise starts a goroutine per stream (one per
// HTTP request), whose stack then grows by copying while it decodes,
// schedules and encodes; a fixed pool of long-lived workers keeps grown
// stacks, and gRPC still starts a goroutine when every worker is busy, so
// the pool bounds nothing.
func TransportOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		// Envoy keeps long-lived HTTP/2 connections; let it ping.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.NumStreamWorkers(streamWorkers),
	}
}

// NewGRPCServer returns a gRPC server exposing s as the ext_proc service.
func (s *Server) NewGRPCServer(o GRPCOptions) *grpc.Server {
	opts := TransportOptions()
	// gRPC takes a zero limit literally (no message may have a payload).
	if o.MaxRecvMsgSize > 0 {
		opts = append(opts, grpc.MaxRecvMsgSize(o.MaxRecvMsgSize))
	}
	if o.MaxSendMsgSize > 0 {
		opts = append(opts, grpc.MaxSendMsgSize(o.MaxSendMsgSize))
	}
	if o.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(o.TLS)))
	}
	g := grpc.NewServer(opts...)
	extprocv3.RegisterExternalProcessorServer(g, s)
	if o.Health != nil {
		healthpb.RegisterHealthServer(g, o.Health)
	}
	return g
}

// NewHealthServer returns a plaintext gRPC server exposing only h.
func NewHealthServer(h *Health) *grpc.Server {
	g := grpc.NewServer()
	healthpb.RegisterHealthServer(g, h)
	return g
}

// Serve runs g on lis until ctx is done, then stops it gracefully, waiting
// at most grace for open streams before cutting them.
func Serve(ctx context.Context, g *grpc.Server, lis net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	select {
	case err := <-errc:
		if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("grpc serve on %s: %w", lis.Addr(), err)
		}
		return nil
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(grace):
		g.Stop()
		<-stopped
	}
	return nil
}
