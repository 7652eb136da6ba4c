package gateway

import (
	"testing"
	"time"

	"github.com/openepp/openepp/test/leakcheck"
)

// TestMain fails the run when goroutines of this module outlive the tests.
func TestMain(m *testing.M) { leakcheck.Main(m, 3*time.Second, "openepp/pkg/") }
