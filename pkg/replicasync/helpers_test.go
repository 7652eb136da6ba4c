package replicasync

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/endpoint"
	"github.com/openepp/openepp/pkg/prefix"
	"github.com/openepp/openepp/pkg/scheduler"

	"github.com/openepp/openepp/test/leakcheck"
)

// TestMain fails the package if a Run, sender or test listener outlives
// the tests.
func TestMain(m *testing.M) { leakcheck.Main(m, 3*time.Second, "openepp/pkg/replicasync.") }

const (
	producerName = "prefix"
	blockSize    = 16
	// waitFor bounds every wait for something to arrive.
	waitFor = 5 * time.Second
)

// newEndpoints returns n endpoints on distinct loopback addresses.
func newEndpoints(n int) []*endpoint.Endpoint {
	out := make([]*endpoint.Endpoint, n)
	for i := range out {
		out[i] = endpoint.New(endpoint.Spec{Name: fmt.Sprintf("ep-%d", i), Address: fmt.Sprintf("127.0.1.%d", i+1), Port: 8000})
	}
	return out
}

// replica is one EPP replica under test: a running node and the producer
// it publishes from and applies to.
type replica struct {
	node *Node
	prod *prefix.Producer
	reg  *prometheus.Registry
}

// startReplica starts a node on 127.0.0.1:0 whose producer serves eps;
// edit adjusts the options first. The node stops when the test ends.
func startReplica(t testing.TB, eps []*endpoint.Endpoint, edit func(*Options)) *replica {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts := Options{Listen: "127.0.0.1:0", FlushInterval: 5 * time.Millisecond, SendTimeout: time.Second, Registerer: reg}
	if edit != nil {
		edit(&opts)
	}
	n, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h := &scheduler.Handle{Log: logr.Discard(), Endpoints: func() []*endpoint.Endpoint { return eps }}
	pr, err := prefix.NewProducer(producerName, prefix.DefaultParams(), h)
	if err != nil {
		t.Fatal(err)
	}
	pr.SetPublisher(n)
	n.SetProducers(func(name string) prefix.Sharer {
		if name == producerName {
			return pr
		}
		return nil
	}, pr)
	run(t, n)
	return &replica{node: n, prod: pr, reg: reg}
}

// run runs n until the test ends and waits until it listens.
func run(t testing.TB, n *Node) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(3 * time.Second):
			t.Error("Run did not return within 3s of its context ending")
		}
	})
	select {
	case <-n.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(waitFor):
		t.Fatal("node not listening after 5s")
	}
}

func (r *replica) addr() string { return r.node.Addr().String() }

// blocks returns how many leading blocks of hs r's index believes e holds.
func (r *replica) blocks(e *endpoint.Endpoint, hs []uint64) int {
	return r.prod.Index().Match(hs, blockSize).Blocks(e)
}

func (r *replica) state() state { return r.node.State().(state) }

func (r *replica) peerState(addr string) (peerState, bool) {
	for _, p := range r.state().Peers {
		if p.Addr == addr {
			return p, true
		}
	}
	return peerState{}, false
}

// insertion returns an insertion of n fresh hashes for e.
func insertion(id string, e *endpoint.Endpoint, n int) prefix.Insertion {
	prompt := []byte(strings.Repeat(fmt.Sprintf("%-64s", id), n))
	return prefix.Insertion{
		Producer: producerName, HostPort: e.HostPort, BlockSizeTokens: blockSize,
		Hashes: prefix.AppendBlockHashes(nil, prefix.Seed("m", id), prompt, 64, n),
	}
}

// eventually polls cond until it holds, failing the test after waitFor.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitFor, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// hangingAddr returns the address of a listener that accepts connections
// and never answers; it and its connections close when the test ends.
func hangingAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

// logRecorder is a logr sink counting messages, for asserting that state
// changes are logged once.
type logRecorder struct {
	mu   sync.Mutex
	msgs map[string]int
}

type recSink struct{ r *logRecorder }

func (s recSink) Init(logr.RuntimeInfo)               {}
func (s recSink) Enabled(int) bool                    { return true }
func (s recSink) WithName(string) logr.LogSink        { return s }
func (s recSink) WithValues(...any) logr.LogSink      { return s }
func (s recSink) Info(_ int, msg string, _ ...any)    { s.r.add(msg) }
func (s recSink) Error(_ error, msg string, _ ...any) { s.r.add(msg) }
func (r *logRecorder) logger() logr.Logger            { return logr.New(recSink{r: r}) }
func (r *logRecorder) count(prefix string) (n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for m, c := range r.msgs {
		if strings.HasPrefix(m, prefix) {
			n += c
		}
	}
	return n
}

func (r *logRecorder) add(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.msgs == nil {
		r.msgs = map[string]int{}
	}
	r.msgs[msg]++
}
