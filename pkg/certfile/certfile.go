// Package certfile serves TLS material kept in PEM files: a key pair that
// follows its files as they are rotated (by cert-manager, or the kubelet
// updating a mounted Secret), so new handshakes use the new pair without a
// restart, and CA bundles.
package certfile

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// KeyPair is a certificate and its key read from two files. Every use
// checks the files' modification times (a stat each, cheap beside a
// handshake) and rereads them when either changed. A pair that fails to
// load, such as one caught half rotated, keeps the last good pair in use
// and is logged once per distinct failure.
type KeyPair struct {
	certFile, keyFile string
	log               logr.Logger

	mu              sync.Mutex
	pair            *tls.Certificate
	certMod, keyMod time.Time
	lastErr         string
}

// LoadKeyPair reads the pair, failing when it cannot: a process should
// not start without its certificate.
func LoadKeyPair(certFile, keyFile string, log logr.Logger) (*KeyPair, error) {
	k := &KeyPair{certFile: certFile, keyFile: keyFile, log: log}
	if err := k.reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// reload rereads the pair if either file changed since the last read.
func (k *KeyPair) reload() error {
	cm, cerr := modTime(k.certFile)
	km, kerr := modTime(k.keyFile)
	if err := errors.Join(cerr, kerr); err != nil {
		return fmt.Errorf("TLS key pair: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.pair != nil && cm.Equal(k.certMod) && km.Equal(k.keyMod) {
		return nil
	}
	pair, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return fmt.Errorf("TLS key pair %s, %s: %w", k.certFile, k.keyFile, err)
	}
	k.pair, k.certMod, k.keyMod, k.lastErr = &pair, cm, km, ""
	return nil
}

// Current returns the pair, reread first if its files changed.
func (k *KeyPair) Current() *tls.Certificate {
	err := k.reload()
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil && err.Error() != k.lastErr {
		k.lastErr = err.Error()
		k.log.Error(err, "cannot reload the TLS key pair, keeping the previous one")
	}
	return k.pair
}

// GetCertificate serves the pair as a server's (tls.Config.GetCertificate).
func (k *KeyPair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return k.Current(), nil
}

// GetClientCertificate serves the pair as a client's
// (tls.Config.GetClientCertificate).
func (k *KeyPair) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return k.Current(), nil
}

// CAPool reads a PEM bundle of CA certificates.
func CAPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA bundle %s: no PEM certificate in it", file)
	}
	return pool, nil
}

func modTime(path string) (time.Time, error) {
	st, err := os.Stat(path)
	if err != nil {
		return time.Time{}, err
	}
	return st.ModTime(), nil
}

// Client is how a client verifies the servers it fetches from and which
// certificate, if any, it presents to them.
type Client struct {
	// InsecureSkipVerify skips verifying servers' certificates.
	InsecureSkipVerify bool
	// CAFile, if set, is the PEM bundle servers are verified against
	// instead of the system roots.
	CAFile string
	// CertFile and KeyFile, if set, are the client key pair offered on
	// every new connection, reread when rotated.
	CertFile, KeyFile string
}

// TLSConfig reads c's files and returns the client TLS configuration; log
// receives the key pair's reload failures.
func (c Client) TLSConfig(log logr.Logger) (*tls.Config, error) {
	//nolint:gosec // the callers' documented choice (upstream's default for scrapes is to skip).
	cfg := &tls.Config{InsecureSkipVerify: c.InsecureSkipVerify}
	if c.CAFile != "" {
		pool, err := CAPool(c.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if c.CertFile != "" {
		kp, err := LoadKeyPair(c.CertFile, c.KeyFile, log)
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = kp.GetClientCertificate
	}
	return cfg, nil
}
