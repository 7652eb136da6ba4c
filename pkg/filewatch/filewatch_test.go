package filewatch

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestChangesOfTheFileOnly: writing the file and replacing it by rename
// (as editors and ConfigMap updates do) each call back once after the
// quiet period; another file in the directory does not.
func TestChangesOfTheFileOnly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "watched.yaml")
	if err := os.WriteFile(path, []byte("a"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := New(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	changed := make(chan struct{}, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- w.Run(ctx, 20*time.Millisecond, func() { changed <- struct{}{} }, func(err error) { t.Error(err) })
	}()
	expect := func(what string, want bool) {
		t.Helper()
		select {
		case <-changed:
			if !want {
				t.Fatalf("%s: called back", what)
			}
		case <-time.After(500 * time.Millisecond):
			if want {
				t.Fatalf("%s: no call back", what)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "other"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	expect("another file", false)
	if err := os.WriteFile(path, []byte("b"), 0o600); err != nil {
		t.Fatal(err)
	}
	expect("a write", true)
	tmp := filepath.Join(dir, ".watched.yaml.tmp")
	if err := os.WriteFile(tmp, []byte("c"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	expect("a rename over it", true)
	expect("nothing more", false)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
