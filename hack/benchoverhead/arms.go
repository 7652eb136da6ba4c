package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/openepp/openepp/hack/benchoverhead/overhead"
)

// Timeouts of the orchestration steps.
const (
	startTimeout = 30 * time.Second // a child's ready line
	readyTimeout = 20 * time.Second // the server's first successful exchange
	jobSlack     = 30 * time.Second // beyond a job's duration
)

// genGC keeps the load generator's garbage collector out of the measured
// runs: it allocates ~30 KB per exchange, and on one CPU its collections
// would add the harness's own pauses to both arms' tails. Collection is off
// and the generator collects between runs (runJob); the limit is only a
// safety net, high enough that no run of the matrix reaches it (a heap
// growing into a low limit forced 40–50 ms stalls into a run's tail). The
// servers under test keep the defaults.
var genGC = []string{"GOGC=off", "GOMEMLIMIT=4GiB"}

// arm is a running server under test with its load generator.
type arm struct {
	name    string
	server  *proc
	gen     *proc
	metrics string // the EPP's metrics page URL; "" for the no-op server
}

func (a *arm) stop() {
	if a.gen != nil {
		a.gen.stop()
	}
	if a.server != nil {
		a.server.stop()
	}
}

// cellArms are the servers measured in every cell: the EPP, the no-op
// floor, and in a comparison a second EPP build.
type cellArms struct {
	epp, floor, compare *arm
}

// runEndpoints runs every cell at e endpoints. All servers stay up; in
// every cell the arms alternate (see pair), an EPP paused while another arm
// runs, so the arms of a repeat are seconds apart and a slow drift of the
// shared machine's load hits all of them.
func (r *runner) runEndpoints(ctx context.Context, e int) (overhead.Idle, []overhead.Row, error) {
	ms, addrs, err := r.startMetrics(ctx, e)
	if err != nil {
		return overhead.Idle{}, nil, err
	}
	defer ms.stop()
	var arms cellArms
	if arms.epp, err = r.startEPP(ctx, eppArm{"epp", r.o.epp, r.o.eppFlags, r.o.pickerConfig}, e, addrs); err != nil {
		return overhead.Idle{}, nil, err
	}
	defer arms.epp.stop()
	if r.o.compare != "" {
		// Started while the first EPP is paused, so that only one scrapes.
		if err := arms.epp.server.signal(syscall.SIGSTOP); err != nil {
			return overhead.Idle{}, nil, err
		}
		arms.compare, err = r.startEPP(ctx, eppArm{"compare", r.o.compare, r.o.compareFlags, r.o.compareConfig}, e, addrs)
		if err != nil {
			return overhead.Idle{}, nil, err
		}
		defer arms.compare.stop()
		if err := r.swap(arms.compare, arms.epp); err != nil {
			return overhead.Idle{}, nil, err
		}
	}
	if arms.floor, err = r.startNoop(ctx, addrs[0]); err != nil {
		return overhead.Idle{}, nil, err
	}
	defer arms.floor.stop()
	idle, err := r.measureIdle(arms, ms, e)
	if err != nil {
		return idle, nil, err
	}
	var rows []overhead.Row
	for _, c := range r.p.concurrency {
		for _, p := range r.p.prompts {
			row, err := r.pair(ctx, arms, cellKey{e, c, p})
			if err != nil {
				return idle, nil, err
			}
			rows = append(rows, row)
		}
	}
	return idle, rows, nil
}

// swap pauses the running EPP from and resumes the paused EPP to, which
// then catches up on its scraping before it is measured.
func (r *runner) swap(from, to *arm) error {
	if err := from.server.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	if err := to.server.signal(syscall.SIGCONT); err != nil {
		return err
	}
	time.Sleep(r.p.settle)
	return nil
}

// metricsNice lowers the metrics servers' priority on the generator's CPU:
// in production their pages come from other machines, and in the EPP arm
// only, their bursts of answers would otherwise delay the generator's
// sends (raising the EPP arm's latency from the intended send time). At
// nice 10 they still get the few percent of the CPU they need when the
// generator saturates it.
const metricsNice = 10

// startMetrics starts the simulated model servers' metrics pages.
func (r *runner) startMetrics(ctx context.Context, e int) (*proc, []string, error) {
	p, err := startProc(procSpec{name: fmt.Sprintf("metrics-%d", e), argv: []string{r.self, "metrics", "--count", strconv.Itoa(e)},
		cpu: r.cpu(false), logDir: r.logDir, pipes: true, nice: metricsNice})
	if err != nil {
		return nil, nil, err
	}
	var rd ready
	if err := p.readLine(ctx, &rd, startTimeout); err != nil {
		p.stop()
		return nil, nil, err
	}
	if len(rd.Addrs) != e {
		p.stop()
		return nil, nil, fmt.Errorf("metrics servers: %d addresses, want %d", len(rd.Addrs), e)
	}
	r.p.pageBytes = rd.PageBytes
	return p, rd.Addrs, nil
}

// eppArm is an EPP build to start: its binary, extra flags and config.
type eppArm struct {
	name, bin string
	flags     []string
	config    string
}

// startEPP starts an EPP on the endpoints and its generator, and waits
// until it routes and has scraped every endpoint at least once. The EPP's
// ports are picked free beforehand, so another process may take one
// between the pick and the EPP's bind; then it tries again on new ports.
func (r *runner) startEPP(ctx context.Context, spec eppArm, e int, addrs []string) (*arm, error) {
	file, err := r.writeEndpoints(e, addrs)
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		a, err := r.startEPPOnce(ctx, spec, e, file)
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			return a, err
		}
	}
}

func (r *runner) startEPPOnce(ctx context.Context, spec eppArm, e int, file string) (*arm, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	argv := []string{spec.bin, "--bind-address=127.0.0.1",
		"--grpc-port=" + ports[0], "--grpc-health-port=" + ports[1], "--metrics-port=" + ports[2],
		"--endpoints-file=" + file, "--config-text=" + spec.config,
		"--secure-serving=" + strconv.FormatBool(r.o.tls), "--refresh-metrics-interval=" + r.o.scrapeInterval.String(),
		"--drain-timeout=1s", "--enable-pprof=true"}
	argv = append(argv, spec.flags...)
	srv, err := startProc(procSpec{name: fmt.Sprintf("%s-%d", spec.name, e), argv: argv, cpu: r.cpu(true), logDir: r.logDir})
	if err != nil {
		return nil, err
	}
	a := &arm{name: spec.name, server: srv, metrics: "http://127.0.0.1:" + ports[2] + "/metrics"}
	if err := r.attachGen(ctx, a, "127.0.0.1:"+ports[0]); err != nil {
		a.stop()
		return nil, err
	}
	time.Sleep(r.p.settle)
	return a, nil
}

// startNoop starts the no-op ext_proc server and its generator.
func (r *runner) startNoop(ctx context.Context, dest string) (*arm, error) {
	argv := []string{r.self, "noop", "--destination", dest, "--tls=" + strconv.FormatBool(r.o.tls)}
	srv, err := startProc(procSpec{name: "noop", argv: argv, cpu: r.cpu(true), logDir: r.logDir, pipes: true})
	if err != nil {
		return nil, err
	}
	a := &arm{name: "floor", server: srv}
	var rd ready
	if err := srv.readLine(ctx, &rd, startTimeout); err != nil || len(rd.Addrs) != 1 {
		a.stop()
		return nil, fmt.Errorf("noop server not ready: %v", err)
	}
	if err := r.attachGen(ctx, a, rd.Addrs[0]); err != nil {
		a.stop()
		return nil, err
	}
	return a, nil
}

// attachGen starts the generator against target and waits for the first
// successful exchange.
func (r *runner) attachGen(ctx context.Context, a *arm, target string) error {
	argv := []string{r.self, "gen", "--target", target, "--tls=" + strconv.FormatBool(r.o.tls),
		"--conns", strconv.Itoa(r.o.conns), "--response", r.o.response}
	g, err := startProc(procSpec{name: "gen-" + a.name, argv: argv, cpu: r.cpu(false), logDir: r.logDir, pipes: true, env: genGC})
	if err != nil {
		return err
	}
	a.gen = g
	var res jobResult
	if err := g.call(ctx, job{Probe: true, Duration: readyTimeout, PromptBytes: 1 << 10}, &res, readyTimeout+jobSlack); err != nil {
		return err
	}
	if res.Err != "" {
		return fmt.Errorf("%s: %s%s", a.name, res.Err, a.server.logTail())
	}
	return a.server.exitedEarly(ctx)
}

// writeEndpoints writes the EPP's --endpoints-file.
func (r *runner) writeEndpoints(e int, addrs []string) (string, error) {
	var b strings.Builder
	b.WriteString("endpoints:\n")
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return "", fmt.Errorf("metrics server address %q: %w", a, err)
		}
		fmt.Fprintf(&b, "- address: %s\n  port: %s\n", host, port)
	}
	path := filepath.Join(r.logDir, fmt.Sprintf("endpoints-%d.yaml", e))
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return "", fmt.Errorf("endpoints file: %w", err)
	}
	return path, nil
}

// freePorts returns n ports free on 127.0.0.1 a moment ago.
func freePorts(n int) ([]string, error) {
	var ports []string
	var lis []net.Listener
	defer func() {
		for _, l := range lis {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		lis = append(lis, l)
		ports = append(ports, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	}
	return ports, nil
}

// fetchProfile saves the CPU profile served at url to path.
func fetchProfile(url, path string) error {
	client := http.Client{Timeout: time.Minute}
	resp, err := client.Get(url)
	if err != nil {
		return fmt.Errorf("epp profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("epp profile: status %d", resp.StatusCode)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("epp profile: %w", err)
	}
	return os.WriteFile(path, data, 0o644)
}

// scrapes reads the EPP's count of metrics scrapes so far.
func scrapes(url string) (float64, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0, fmt.Errorf("epp metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("epp metrics: status %d", resp.StatusCode)
	}
	var total float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "openepp_metrics_scrapes_total") {
			continue
		}
		if v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64); err == nil {
			total += v
		}
	}
	return total, sc.Err()
}
