package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/go-logr/logr"
	"github.com/openepp/openepp/pkg/extproc"
	"github.com/openepp/openepp/pkg/server"
	"github.com/openepp/openepp/pkg/sim"
)

// ready is the first line a server subcommand prints on stdout.
type ready struct {
	Addrs     []string `json:"addrs"`
	PageBytes int      `json:"page_bytes,omitempty"`
}

// noopMain serves extproc.NoopServer, the transport floor, with the gRPC
// server options the EPP uses, until ctx ends.
func noopMain(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("noop", flag.ContinueOnError)
	useTLS := fs.Bool("tls", false, "serve TLS with a self-signed certificate, as the EPP does by default")
	dest := fs.String("destination", "127.0.0.1:8000", "endpoint returned as the routing decision")
	if err := fs.Parse(args); err != nil {
		return err
	}
	opts := append(server.TransportOptions(),
		grpc.MaxRecvMsgSize(server.DefaultMaxRequestBodyBytes+1<<20),
		grpc.MaxSendMsgSize(server.DefaultMaxRequestBodyBytes+1<<20),
	)
	if *useTLS {
		cfg, err := server.TLSConfig("", false, logr.Discard())
		if err != nil {
			return fmt.Errorf("noop: %w", err)
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg)))
	}
	g := grpc.NewServer(opts...)
	extprocv3.RegisterExternalProcessorServer(g, &extproc.NoopServer{Destination: *dest})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("noop: listen: %w", err)
	}
	if err := json.NewEncoder(stdout).Encode(ready{Addrs: []string{lis.Addr().String()}}); err != nil {
		lis.Close()
		return fmt.Errorf("noop: %w", err)
	}
	return server.Serve(ctx, g, lis, time.Second)
}

// pageVariants is how many versions of the metrics page rotate, so every
// scrape sees different gauge values than the one before, as under load.
const pageVariants = 8

// metricsMain serves a simulated vLLM metrics page on --count ports until
// ctx ends. The page is the one package sim serves (real vLLM names and
// layout), captured once, with the queue, running and KV-cache gauges
// changing from scrape to scrape; serving bytes instead of running an
// engine per endpoint keeps 1,000 endpoints affordable on a shared core.
func metricsMain(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("metrics", flag.ContinueOnError)
	count := fs.Int("count", 10, "number of simulated model servers (one port each)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *count < 1 {
		return fmt.Errorf("metrics: --count must be >= 1, got %d", *count)
	}
	page, err := capturePage(ctx)
	if err != nil {
		return err
	}
	pages := pageVersions(page)
	var lis []net.Listener
	defer func() {
		for _, l := range lis {
			l.Close()
		}
	}()
	for range *count {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("metrics: listen: %w", err)
		}
		lis = append(lis, l)
	}
	return serveMetrics(ctx, lis, pages, stdout)
}

// serveMetrics answers GET /metrics on every listener with the next page
// version, over kept-alive HTTP/1.1 connections, until ctx ends.
//
// It is a minimal responder rather than net/http: the metrics servers share
// a core with the load generator, and net/http's ~45 µs per scrape (2,000
// scrapes/s at 100 endpoints) took CPU from the generator in the EPP arm
// only, adding generator lag to the EPP's latencies and not the floor's.
func serveMetrics(ctx context.Context, lis []net.Listener, pages [][]byte, stdout io.Writer) error {
	rd := ready{PageBytes: len(pages[0])}
	resp := make([][]byte, len(pages))
	for i, p := range pages {
		head := "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: " +
			strconv.Itoa(len(p)) + "\r\n\r\n"
		resp[i] = append([]byte(head), p...)
	}
	var wg sync.WaitGroup
	var conns sync.Map // net.Conn -> struct{}, closed at the end
	var n atomic.Uint64
	for _, l := range lis {
		rd.Addrs = append(rd.Addrs, l.Addr().String())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				conns.Store(c, struct{}{})
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer conns.Delete(c)
					serveMetricsConn(c, resp, &n)
				}()
			}
		}()
	}
	err := json.NewEncoder(stdout).Encode(rd)
	if err == nil {
		<-ctx.Done()
	}
	for _, l := range lis {
		_ = l.Close()
	}
	conns.Range(func(c, _ any) bool { _ = c.(net.Conn).Close(); return true })
	wg.Wait()
	return err
}

// notFound answers any request but GET /metrics.
var notFound = []byte("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

// serveMetricsConn answers requests on one connection until it closes or
// sends something that is not an HTTP/1.1 request head without a body.
func serveMetricsConn(c net.Conn, resp [][]byte, n *atomic.Uint64) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 4096)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		ok := bytes.HasPrefix(line, []byte("GET /metrics ")) || bytes.HasPrefix(line, []byte("GET /metrics?"))
		for { // the rest of the head, up to the blank line
			h, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(bytes.TrimRight(h, "\r\n")) == 0 {
				break
			}
		}
		out := notFound
		if ok {
			out = resp[n.Add(1)%uint64(len(resp))]
		}
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// capturePage starts one simulator and returns its metrics page.
func capturePage(ctx context.Context) ([]byte, error) {
	inst, err := sim.Start(ctx, sim.Config{})
	if err != nil {
		return nil, fmt.Errorf("metrics: start simulator: %w", err)
	}
	defer inst.Close()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, inst.URL()+inst.MetricsPath(), nil)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics: fetch simulator page: %w", err)
	}
	defer resp.Body.Close()
	page, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, errors.Join(fmt.Errorf("metrics: simulator page status %d", resp.StatusCode), err)
	}
	return page, nil
}

// pageVersions returns pageVariants copies of page whose load gauges differ.
func pageVersions(page []byte) [][]byte {
	out := make([][]byte, pageVariants)
	for v := range out {
		values := map[string]string{
			"vllm:num_requests_waiting": strconv.Itoa(v % 3),
			"vllm:num_requests_running": strconv.Itoa(4 + v),
			"vllm:kv_cache_usage_perc":  strconv.FormatFloat(0.1+0.05*float64(v), 'f', 2, 64),
		}
		lines := strings.Split(string(page), "\n")
		for i, l := range lines {
			name, _, ok := strings.Cut(l, "{")
			val, found := values[name]
			if !ok || !found {
				continue
			}
			if sp := strings.LastIndexByte(l, ' '); sp > 0 {
				lines[i] = l[:sp+1] + val
			}
		}
		out[v] = []byte(strings.Join(lines, "\n"))
	}
	return out
}
