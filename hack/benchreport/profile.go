package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// profileEntry is one function of `go tool pprof -top -cum` output.
type profileEntry struct {
	Name            string
	FlatPct, CumPct float64 // percent of all samples
}

// cpuProfile is a summarised CPU profile.
type cpuProfile struct {
	Header  []string // pprof's header lines (duration, samples)
	Entries []profileEntry
}

// readProfile summarises a pprof CPU profile with the Go toolchain's
// pprof (profiles served by net/http/pprof carry their symbols).
func readProfile(ctx context.Context, path string) (*cpuProfile, error) {
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-cum", "-nodecount=5000", path).Output()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof %s: %w", path, err)
	}
	return parseTop(bytes.NewReader(out))
}

// parseTop reads `pprof -top` text: header lines, a column title line,
// then "flat flat% sum% cum cum% name" rows.
func parseTop(r io.Reader) (*cpuProfile, error) {
	p := &cpuProfile{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	rows := false
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(l, "flat "):
			rows = true
		case !rows:
			if strings.HasPrefix(l, "Duration:") || strings.HasPrefix(l, "Type:") {
				p.Header = append(p.Header, l)
			}
		case l != "":
			e, err := parseTopRow(l)
			if err != nil {
				return nil, err
			}
			p.Entries = append(p.Entries, e)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(p.Entries) == 0 {
		return nil, fmt.Errorf("pprof output has no rows")
	}
	return p, nil
}

func parseTopRow(l string) (profileEntry, error) {
	f := strings.Fields(l)
	if len(f) < 6 {
		return profileEntry{}, fmt.Errorf("malformed pprof row %q", l)
	}
	flat, err1 := strconv.ParseFloat(strings.TrimSuffix(f[1], "%"), 64)
	cum, err2 := strconv.ParseFloat(strings.TrimSuffix(f[4], "%"), 64)
	if err1 != nil || err2 != nil {
		return profileEntry{}, fmt.Errorf("malformed pprof row %q", l)
	}
	return profileEntry{Name: strings.Join(f[5:], " "), FlatPct: flat, CumPct: cum}, nil
}

// cum returns the cumulative share of the first function whose name
// equals one of names, summed over names; ok is false if none is found.
func (p *cpuProfile) cum(names ...string) (float64, bool) {
	var total float64
	found := false
	for _, n := range names {
		for _, e := range p.Entries {
			if e.Name == n {
				total += e.CumPct
				found = true
				break
			}
		}
	}
	return total, found
}

// profileRows are the cost centres of an EPP exchange, by the functions
// that own them.
var profileRows = []struct{ label, where string }{
	{"ext_proc stream handlers, all of it", "github.com/openepp/openepp/pkg/server.(*Server).Process"},
	{"  gRPC receive + protobuf decode", "google.golang.org/grpc.(*serverStream).RecvMsg"},
	{"  gRPC send + protobuf encode", "google.golang.org/grpc.(*serverStream).SendMsg"},
	{"  request body parsing", "github.com/openepp/openepp/pkg/request.Parse"},
	{"  scheduling (filters, scorers, picker)", "github.com/openepp/openepp/pkg/scheduler.(*Scheduler).Schedule"},
	{"  response usage parsing", "github.com/openepp/openepp/pkg/request.ParseUsage"},
	{"gRPC connection reader (HTTP/2 frames)", "google.golang.org/grpc/internal/transport.(*http2Server).HandleStreams"},
	{"gRPC connection writer", "google.golang.org/grpc/internal/transport.(*loopyWriter).run"},
	{"metrics scrape loops", "github.com/openepp/openepp/pkg/metrics.(*target).run"},
	{"scrape connections (net/http read + write loops)", "net/http.(*persistConn).readLoop|net/http.(*persistConn).writeLoop"},
	{"garbage collector, background marking", "runtime.gcBgMarkWorker"},
	{"goroutine stack growth", "runtime.newstack"},
	{"system calls", "internal/runtime/syscall/linux.Syscall6"},
}

// renderProfile writes where the EPP's CPU went.
func renderProfile(w io.Writer, p *cpuProfile, cell string) {
	fmt.Fprintf(w, "Where the EPP's CPU goes: a CPU profile of the EPP during an extra closed-loop run in the cell %s (%s). "+
		"Shares are cumulative (a function and what it calls), of all samples; rows overlap.\n\n| cost centre | function | share |\n|---|---|--:|\n",
		cell, strings.Join(p.Header, "; "))
	for _, r := range profileRows {
		v, ok := p.cum(strings.Split(r.where, "|")...)
		share := "n/a"
		if ok {
			share = fmt.Sprintf("%.1f %%", v)
		}
		fmt.Fprintf(w, "| %s | `%s` | %s |\n", strings.ReplaceAll(r.label, "  ", "&nbsp;&nbsp;"), strings.ReplaceAll(r.where, "|", "`, `"), share)
	}
	fmt.Fprintf(w, "\nTop functions by own (flat) time:\n\n| function | flat |\n|---|--:|\n")
	top := slices.Clone(p.Entries)
	slices.SortStableFunc(top, func(a, b profileEntry) int { return cmp.Compare(b.FlatPct, a.FlatPct) })
	for _, e := range top[:min(12, len(top))] {
		if e.FlatPct > 0 {
			fmt.Fprintf(w, "| `%s` | %.1f %% |\n", e.Name, e.FlatPct)
		}
	}
	fmt.Fprintln(w)
}
