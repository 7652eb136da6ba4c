package models

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openepp/openepp/pkg/scheduler"
)

// TestPollWithAPIKey: a server started with an API key refuses polls
// without it (no list, ever); with apiKeyFile the poll carries the key as a
// bearer token, and a rotated key is picked up from the file.
func TestPollWithAPIKey(t *testing.T) {
	t.Parallel()
	var want atomic.Value
	want.Store("k1")
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+want.Load().(string) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, vllmList)
	})
	ep := endpointAt(t, "e", srv.Listener.Addr().String())
	newRounds(newSource(t, "", ep)).run()
	if ep.Models() != nil {
		t.Fatal("a poll without the key was answered")
	}

	file := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(file, []byte("k1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ep = endpointAt(t, "e", srv.Listener.Addr().String())
	r := newRounds(newSource(t, `{"apiKeyFile": "`+file+`"}`, ep))
	r.run()
	if ms := ep.Models(); ms == nil || len(ms.Items) != 2 {
		t.Fatalf("with the key: list %+v", ms)
	}
	want.Store("k2")
	if err := os.WriteFile(file, []byte("k2"), 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute) // a new modification time, whatever the clock's resolution
	if err := os.Chtimes(file, later, later); err != nil {
		t.Fatal(err)
	}
	ep.SetModels(nil)
	r.run()
	if ep.Models() == nil {
		t.Error("the rotated key was not read")
	}
}

func TestAPIKeyFileErrors(t *testing.T) {
	t.Parallel()
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, want string }{
		{filepath.Join(t.TempDir(), "missing"), "no such file"},
		{empty, "is empty"},
	} {
		h := &scheduler.Handle{Registerer: prometheus.NewRegistry()}
		_, err := SourceFactory("src", []byte(`{"apiKeyFile": "`+tc.file+`"}`), h)
		if err == nil || !strings.Contains(err.Error(), "apiKeyFile") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want apiKeyFile … %s", tc.file, err, tc.want)
		}
	}
}
