package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/openepp/openepp/hack/benchoverhead/overhead"
)

// machineInfo is where and from what the report was generated.
type machineInfo struct {
	CPUModel, Kernel, GoVersion, LoadAvg string
	Cores                                int
	Commit                               string // with a note when the tree has uncommitted changes
	Date                                 time.Time
}

func collectMachine(now time.Time) machineInfo {
	m := machineInfo{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), Date: now.UTC(), CPUModel: "unknown", Kernel: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		m.LoadAvg = strings.Join(f[:min(3, len(f))], " ")
	}
	m.Commit = overhead.GitCommit()
	return m
}

func (m machineInfo) render(w io.Writer) {
	fmt.Fprintf(w, "| | |\n|---|---|\n")
	fmt.Fprintf(w, "| CPU | %s, %d cores (a shared VM) |\n", m.CPUModel, m.Cores)
	fmt.Fprintf(w, "| Kernel | Linux %s |\n", m.Kernel)
	fmt.Fprintf(w, "| Go | %s |\n", m.GoVersion)
	fmt.Fprintf(w, "| Commit | %s |\n", m.Commit)
	fmt.Fprintf(w, "| Report generated | %s (load average %s) |\n\n", m.Date.Format(time.RFC3339), m.LoadAvg)
}
