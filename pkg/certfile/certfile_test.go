package certfile_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/openepp/openepp/pkg/certfile"
	"github.com/openepp/openepp/pkg/certfile/certtest"
)

// errorLog counts the error lines a logger was given.
type errorLog struct {
	mu    sync.Mutex
	lines []string
}

func (e *errorLog) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.lines = append(e.lines, args)
	}, funcr.Options{})
}

func (e *errorLog) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.lines)
}

// pairOnDisk writes a client key pair named cn into a fresh directory.
func pairOnDisk(t *testing.T, ca *certtest.CA, cn string) (dir, certFile, keyFile string) {
	t.Helper()
	dir = t.TempDir()
	certFile, keyFile = ca.ClientFiles(t, dir, cn)
	return dir, certFile, keyFile
}

func commonName(t *testing.T, kp *certfile.KeyPair) string {
	t.Helper()
	c := kp.Current()
	if c == nil || c.Leaf == nil {
		t.Fatal("no current certificate")
	}
	return c.Leaf.Subject.CommonName
}

// TestKeyPairFollowsRotation rotates a pair on disk: the new pair is used
// once both files are in place, a half-rotated pair keeps the old one and
// is logged once, and a removed file keeps the old pair too.
func TestKeyPairFollowsRotation(t *testing.T) {
	t.Parallel()
	ca := certtest.NewCA(t, "ca")
	dir, certFile, keyFile := pairOnDisk(t, ca, "one")
	logs := &errorLog{}
	kp, err := certfile.LoadKeyPair(certFile, keyFile, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	if got := commonName(t, kp); got != "one" {
		t.Fatalf("loaded %q, want one", got)
	}
	cert2, key2 := ca.Client(t, "two")
	certtest.Write(t, dir, "tls.crt", cert2) // the key is still the old one
	for range 3 {
		if got := commonName(t, kp); got != "one" {
			t.Fatalf("half rotated: serving %q, want still one", got)
		}
	}
	if n := logs.count(); n != 1 {
		t.Errorf("half rotation logged %d times, want once", n)
	}
	certtest.Write(t, dir, "tls.key", key2)
	if got := commonName(t, kp); got != "two" {
		t.Errorf("rotated: serving %q, want two", got)
	}
	if c, err := kp.GetCertificate(nil); err != nil || c.Leaf.Subject.CommonName != "two" {
		t.Errorf("GetCertificate = %v, %v; want two", c, err)
	}
	if c, err := kp.GetClientCertificate(nil); err != nil || c.Leaf.Subject.CommonName != "two" {
		t.Errorf("GetClientCertificate = %v, %v; want two", c, err)
	}
}

func TestLoadFailures(t *testing.T) {
	t.Parallel()
	ca := certtest.NewCA(t, "ca")
	dir, certFile, keyFile := pairOnDisk(t, ca, "x")
	other, _ := ca.Client(t, "y")
	otherFile := certtest.Write(t, dir, "other.crt", other)
	for name, files := range map[string][2]string{
		"missing key":      {certFile, dir + "/none.key"},
		"key of another":   {otherFile, keyFile},
		"not a key at all": {certFile, certFile},
	} {
		if _, err := certfile.LoadKeyPair(files[0], files[1], logr.Discard()); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	caFile := certtest.Write(t, dir, "ca.pem", ca.PEM)
	if _, err := certfile.CAPool(caFile); err != nil {
		t.Errorf("CA bundle: %v", err)
	}
	for name, file := range map[string]string{"missing": dir + "/none.pem", "no PEM": certtest.Write(t, dir, "junk", []byte("junk"))} {
		if _, err := certfile.CAPool(file); err == nil || !strings.Contains(err.Error(), "CA bundle") {
			t.Errorf("%s CA bundle: error %v", name, err)
		}
	}
}
