package main

import (
	"cmp"
	"fmt"
	"io"
	"runtime"
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
	m := machineInfo{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), Date: now.UTC(), LoadAvg: overhead.LoadAvg(), Commit: overhead.GitCommit()}
	cpu, kernel := overhead.Host()
	m.CPUModel, m.Kernel = cmp.Or(cpu, "unknown"), cmp.Or(kernel, "unknown")
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
