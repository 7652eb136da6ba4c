package plugintest

import (
	"encoding/json"
	"testing"
)

// Dumped is d's DumpState as a client of /debug/plugins/state decodes it,
// so a test sees the JSON field names and shapes; it fails the test if the
// state does not encode to a JSON object.
func Dumped(t testing.TB, d interface{ DumpState() any }) map[string]any {
	t.Helper()
	raw, err := json.Marshal(d.DumpState())
	if err != nil {
		t.Fatalf("state does not encode: %v", err)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("state is not a JSON object: %v (%s)", err, raw)
	}
	return out
}

// DumpWhile calls check repeatedly while work runs on another goroutine,
// and once more after it returned: the shape of a -race test that reads a
// plugin's state while requests change it.
func DumpWhile(work, check func()) {
	done := make(chan struct{})
	go func() { defer close(done); work() }()
	for {
		select {
		case <-done:
			check()
			return
		default:
			check()
		}
	}
}
