// Package leakcheck fails a test binary whose goroutines outlive its tests.
// It is test support (like net/http/httptest), imported only from tests.
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Main runs the tests, then waits up to grace for every goroutine whose
// stack mentions match (e.g. "openepp/pkg/") to end, and exits non-zero
// listing the stacks left. gRPC and net/http internals that linger briefly
// after a Close do not run project code, so they never count.
func Main(m *testing.M, grace time.Duration, match string) {
	code := m.Run()
	if code == 0 {
		if leaked := Leaked(grace, match); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// Leaked waits up to d for goroutines matching match to end and returns the
// stacks of those left.
func Leaked(d time.Duration, match string) string {
	deadline := time.Now().Add(d)
	for {
		buf := make([]byte, 4<<20)
		var leaked []string
		for g := range strings.SplitSeq(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, match) && !strings.Contains(g, "leakcheck.") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(25 * time.Millisecond)
	}
}
