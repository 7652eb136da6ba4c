package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// proc is one child process whose output is echoed with a name prefix.
type proc struct {
	name  string
	cmd   *exec.Cmd
	done  chan struct{}
	err   error
	mu    sync.Mutex
	lines []string
	seen  chan struct{} // pinged on each stdout line
}

// group supervises the demo's children.
type group struct{ procs []*proc }

func (g *group) start(ctx context.Context, name, path string, args ...string) (*proc, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%s binary not found (run `make build` first): %w", name, err)
	}
	cmd := exec.Command(path, args...)
	// Children die with the demo even if it is killed outright.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), seen: make(chan struct{}, 1)}
	g.procs = append(g.procs, p)
	var copies sync.WaitGroup
	copies.Add(2)
	go func() { defer copies.Done(); p.echo(stdout, true) }()
	go func() { defer copies.Done(); p.echo(stderr, false) }()
	go func() {
		copies.Wait()
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) echo(r io.Reader, keep bool) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		fmt.Printf("[%s] %s\n", p.name, s.Text())
		if keep {
			p.mu.Lock()
			p.lines = append(p.lines, s.Text())
			p.mu.Unlock()
			select {
			case p.seen <- struct{}{}:
			default:
			}
		}
	}
}

// waitForLines waits until n stdout lines start with prefix.
func (p *proc) waitForLines(ctx context.Context, prefix string, n int, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		count := 0
		for _, l := range p.lines {
			if strings.HasPrefix(l, prefix) {
				count++
			}
		}
		p.mu.Unlock()
		if count >= n {
			return nil
		}
		select {
		case <-p.seen:
		case <-p.done:
			return fmt.Errorf("%s exited early: %v", p.name, p.err)
		case <-deadline:
			return fmt.Errorf("%s: timed out waiting for %d %q lines", p.name, n, prefix)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// wait returns when ctx ends (nil) or when any child exits (an error).
func (g *group) wait(ctx context.Context) error {
	exited := make(chan *proc, len(g.procs))
	for _, p := range g.procs {
		go func() {
			select {
			case <-p.done:
				exited <- p
			case <-ctx.Done():
			}
		}()
	}
	select {
	case <-ctx.Done():
		return nil
	case p := <-exited:
		return fmt.Errorf("%s exited: %v", p.name, p.err)
	}
}

// stop sends SIGTERM to every child, newest first, and kills stragglers.
func (g *group) stop(grace time.Duration) {
	for i := len(g.procs) - 1; i >= 0; i-- {
		_ = g.procs[i].cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.After(grace)
	for _, p := range g.procs {
		select {
		case <-p.done:
		case <-deadline:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// waitHealthy polls the EPP's gRPC readiness service.
func waitHealthy(ctx context.Context, addr string, timeout time.Duration) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	return poll(ctx, timeout, func() error {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		resp, err := client.Check(cctx, &healthpb.HealthCheckRequest{Service: "readiness"})
		if err != nil {
			return err
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return errors.New(resp.GetStatus().String())
		}
		return nil
	})
}

func waitListening(ctx context.Context, addr string, timeout time.Duration) error {
	return poll(ctx, timeout, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
}

func poll(ctx context.Context, timeout time.Duration, try func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := try()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
