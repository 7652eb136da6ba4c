package discovery

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openepp/openepp/pkg/datastore"
	"github.com/openepp/openepp/pkg/endpoint"
)

func TestParseList(t *testing.T) {
	t.Parallel()
	got, err := ParseList(" 10.0.0.1:8000, [::1]:9000 ,")
	if err != nil {
		t.Fatal(err)
	}
	want := []endpoint.Spec{{Name: "10.0.0.1:8000", Address: "10.0.0.1", Port: 8000}, {Name: "[::1]:9000", Address: "::1", Port: 9000}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
	for _, bad := range []string{"10.0.0.1", "host:80", "10.0.0.1:0", "10.0.0.1:70000", "10.0.0.1:1,10.0.0.1:1"} {
		if _, err := ParseList(bad); err == nil {
			t.Errorf("ParseList(%q) accepted", bad)
		}
	}
}

func TestLoadFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, text string
		want       []string
		errs       []string
	}{
		{name: "list", text: "- address: 10.0.0.1\n  port: 8000\n  labels: {role: decode}\n- name: b\n  address: 10.0.0.2\n  port: 8001\n",
			want: []string{"10.0.0.1:8000", "b"}},
		{name: "object form", text: "endpoints:\n- {address: 10.0.0.1, port: 8000}\n", want: []string{"10.0.0.1:8000"}},
		{name: "all problems", text: "- {address: nope, port: 1}\n- {address: 10.0.0.1, port: 0}\n",
			errs: []string{"endpoints[0]", "not an IP", "endpoints[1]", "port 0"}},
		{name: "unknown key", text: "- {address: 10.0.0.1, port: 1, prot: 2}\n", errs: []string{"prot"}},
		{name: "not yaml", text: "::::\n\t-", errs: []string{"parse endpoints file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "eps.yaml")
			if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			specs, err := LoadFile(path)
			for _, e := range tc.errs {
				if err == nil || !strings.Contains(err.Error(), e) {
					t.Errorf("error %v does not mention %q", err, e)
				}
			}
			if len(tc.errs) > 0 {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range specs {
				got = append(got, s.Name)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestFileReloadKeepsLastGoodSet(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "eps.yaml")
	write := func(text string) {
		tmp := filepath.Join(dir, "tmp")
		if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil { // how editors and ConfigMaps update
			t.Fatal(err)
		}
	}
	write("- {address: 10.0.0.1, port: 8000}\n")
	store := datastore.New()
	reg := prometheus.NewRegistry()
	f := NewFile(path, store, testr.New(t), reg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.Start(ctx) }()
	defer func() { cancel(); <-done }()

	waitFor(t, "initial load", func() bool { return len(store.Snapshot()) == 1 })
	write("- {address: 10.0.0.1, port: 8000}\n- {address: 10.0.0.2, port: 8000}\n")
	waitFor(t, "reload", func() bool { return len(store.Snapshot()) == 2 })
	write("- {address: broken\n")
	waitFor(t, "rejected reload counted", func() bool { return testutil.ToFloat64(f.errors) == 1 })
	if n := len(store.Snapshot()); n != 2 {
		t.Errorf("broken file changed the endpoints: %d", n)
	}
	write("[]\n")
	waitFor(t, "emptied", func() bool { return len(store.Snapshot()) == 0 })
}

func TestFileStartFailsOnBrokenFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "eps.yaml")
	if err := os.WriteFile(path, []byte("- {address: 1.2.3.4}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := NewFile(path, datastore.New(), testr.New(t), nil).Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "port 0") {
		t.Errorf("Start error = %v, want a port error", err)
	}
}
