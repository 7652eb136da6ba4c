package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat;
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// stopGrace is how long a child gets to exit after SIGTERM.
const stopGrace = 3 * time.Second

// proc is one child process of the benchmark.
type proc struct {
	name    string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	stdout  *bufio.Reader
	logPath string
	exited  chan struct{}
	waitErr error
}

// procSpec describes a child: its command line, the CPU to pin it to
// (-1: none), the folder for its log, and whether its stdin and stdout are
// a JSON-lines channel (otherwise stdout goes to the log too).
type procSpec struct {
	name   string
	argv   []string
	cpu    int
	logDir string
	pipes  bool
	env    []string // added to this process's environment
	// nice, when > 0, lowers the child's CPU priority by that much, so
	// that on a shared CPU it yields to the process it stands beside.
	nice int
}

// startProc starts a child with stderr in a log file. The child is killed
// if this process dies (Pdeathsig).
func startProc(spec procSpec) (*proc, error) {
	argv := spec.argv
	if _, err := exec.LookPath("nice"); spec.nice > 0 && err == nil {
		argv = append([]string{"nice", "-n", strconv.Itoa(spec.nice)}, argv...)
	}
	if spec.cpu >= 0 {
		argv = append([]string{"taskset", "-c", strconv.Itoa(spec.cpu)}, argv...)
	}
	logPath := filepath.Join(spec.logDir, spec.name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.name, err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), childEnv+"=1"), spec.env...)
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &proc{name: spec.name, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	if spec.pipes {
		if err := p.pipe(); err != nil {
			return nil, fmt.Errorf("start %s: %w", spec.name, err)
		}
	} else {
		cmd.Stdout = logf
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.name, err)
	}
	go func() { p.waitErr = cmd.Wait(); close(p.exited) }()
	return p, nil
}

func (p *proc) pipe() error {
	stdin, err := p.cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	p.stdin, p.stdout = stdin, bufio.NewReaderSize(stdout, 1<<20)
	return nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// readLine decodes the child's next stdout line as JSON into v, waiting at
// most timeout, or until ctx ends.
func (p *proc) readLine(ctx context.Context, v any, timeout time.Duration) error {
	type line struct {
		b   []byte
		err error
	}
	ch := make(chan line, 1)
	go func() {
		b, err := p.stdout.ReadBytes('\n')
		ch <- line{b, err}
	}()
	select {
	case l := <-ch:
		if l.err != nil {
			return fmt.Errorf("%s: read output: %w%s", p.name, l.err, p.logTail())
		}
		if err := json.Unmarshal(l.b, v); err != nil {
			return fmt.Errorf("%s: bad output line %q: %w", p.name, bytes.TrimSpace(l.b), err)
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s: no output within %s%s", p.name, timeout, p.logTail())
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", p.name, ctx.Err())
	}
}

// call sends one JSON request line and reads the JSON reply line.
func (p *proc) call(ctx context.Context, req, reply any, timeout time.Duration) error {
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("%s: send: %w%s", p.name, err, p.logTail())
	}
	return p.readLine(ctx, reply, timeout)
}

// signal sends sig to the child.
func (p *proc) signal(sig syscall.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: signal %s: %w", p.name, sig, err)
	}
	return nil
}

// stop ends the child: SIGTERM (after SIGCONT, in case it is paused), then
// SIGKILL after stopGrace.
func (p *proc) stop() {
	if p.stdin != nil {
		_ = p.stdin.Close()
	}
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopGrace):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// logTail returns the end of the child's log, for error messages.
func (p *proc) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return "\n--- " + p.name + " log tail ---\n" + string(b)
}

// cpuSeconds is the process's user + system CPU time so far.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time: %w", err)
	}
	return parseStat(b)
}

// parseStat reads utime + stime, in seconds, from a /proc/<pid>/stat line.
func parseStat(b []byte) (float64, error) {
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("cpu time: malformed stat line %q", b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("cpu time: short stat line %q", b)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("cpu time: %w", err)
	}
	return float64(utime+stime) / clockTicks, nil
}

// peakRSSMiB is the process's peak resident set size (VmHWM).
func peakRSSMiB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("peak rss: %w", err)
	}
	return parseHWM(b)
}

// parseHWM reads VmHWM, in MiB, from a /proc/<pid>/status file.
func parseHWM(b []byte) (float64, error) {
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				return 0, fmt.Errorf("peak rss: %w", err)
			}
			return kb / 1024, nil
		}
	}
	return 0, errors.New("peak rss: no VmHWM in the process status")
}

// resetPeakRSS makes VmHWM start again from the current RSS (Linux ≥ 4.0),
// so each cell reports its own peak; false when the kernel refuses.
func resetPeakRSS(pid int) bool {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
}

// cpuPressure is the kernel's cumulative time, in seconds, during which
// at least one runnable task waited for a CPU (/proc/pressure/cpu "some"
// total); ok is false where PSI is unavailable.
func cpuPressure() (float64, bool) {
	b, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return 0, false
	}
	for _, f := range strings.Fields(string(b)) {
		if v, found := strings.CutPrefix(f, "total="); found {
			us, err := strconv.ParseFloat(v, 64)
			return us / 1e6, err == nil
		}
	}
	return 0, false
}

// pressure measures CPU pressure from its creation on.
type pressure struct {
	t0    time.Time
	total float64
	ok    bool
}

func newPressure() pressure {
	total, ok := cpuPressure()
	return pressure{t0: time.Now(), total: total, ok: ok}
}

// pct is the share of the time since newPressure during which some task
// waited for a CPU, in percent; -1 without PSI.
func (p pressure) pct() float64 {
	total, ok := cpuPressure()
	wall := time.Since(p.t0).Seconds()
	if !p.ok || !ok || wall <= 0 {
		return -1
	}
	return 100 * (total - p.total) / wall
}

// canPin reports whether processes can be pinned to separate CPUs.
func canPin(cores int) bool {
	if cores < 2 {
		return false
	}
	_, err := exec.LookPath("taskset")
	return err == nil
}

// exitedEarly reports the child's exit if it has already ended.
func (p *proc) exitedEarly(ctx context.Context) error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited: %v%s", p.name, p.waitErr, p.logTail())
	case <-ctx.Done():
		return ctx.Err()
	default:
		return nil
	}
}
