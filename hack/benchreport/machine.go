package main

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
	m := machineInfo{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), Date: now.UTC(), LoadAvg: overhead.LoadAvg(), Commit: overhead.GitCommit()}
	cpu, kernel := overhead.Host()
	m.CPUModel, m.Kernel = cmp.Or(cpu, "unknown"), cmp.Or(kernel, "unknown")
	return m
}

// renderMeasuredOn says on which machine the real-time inputs were
// measured when it is not the one the report was generated on: the
// overhead benchmark's numbers and the micro-benchmarks belong to their
// machine, while the fleet simulation runs in virtual time and gives the
// same results anywhere.
func renderMeasuredOn(w io.Writer, m machineInfo, in inputs, dir string) {
	var lines []string
	if o := in.overhead; o != nil && (o.Machine.CPUModel != m.CPUModel || o.Machine.Kernel != m.Kernel) {
		lines = append(lines, fmt.Sprintf("the overhead benchmark on %s, %d cores, Linux %s, %s",
			o.Machine.CPUModel, o.Machine.Cores, o.Machine.Kernel, o.Machine.GoVersion))
	}
	if cpu := microCPU(filepath.Join(dir, "micro.txt")); cpu != "" && cpu != m.CPUModel {
		lines = append(lines, "the micro-benchmarks on "+cpu)
	}
	if len(lines) > 0 {
		fmt.Fprintf(w, "Measured elsewhere (their numbers belong to that machine): %s. The fleet simulation runs in virtual "+
			"time, so its results do not depend on the machine.\n\n", strings.Join(lines, "; "))
	}
}

// microCPU is the cpu line of a go test -bench output file ("" if none).
func microCPU(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(data), "\n") {
		if cpu, ok := strings.CutPrefix(l, "cpu: "); ok {
			return strings.TrimSpace(cpu)
		}
	}
	return ""
}

func (m machineInfo) render(w io.Writer) {
	fmt.Fprintf(w, "| | |\n|---|---|\n")
	fmt.Fprintf(w, "| CPU | %s, %d cores (a shared VM) |\n", m.CPUModel, m.Cores)
	fmt.Fprintf(w, "| Kernel | Linux %s |\n", m.Kernel)
	fmt.Fprintf(w, "| Go | %s |\n", m.GoVersion)
	fmt.Fprintf(w, "| Commit | %s |\n", m.Commit)
	fmt.Fprintf(w, "| Report generated | %s (load average %s) |\n\n", m.Date.Format(time.RFC3339), m.LoadAvg)
}
