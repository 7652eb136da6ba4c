package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// TLSConfig returns the ext_proc server's TLS config: the key pair in
// certDir (tls.crt, tls.key) when given, else a fresh self-signed
// certificate. With reload, a changed key pair on disk is picked up at the
// next handshake (checked at most once a second).
func TLSConfig(certDir string, reload bool) (*tls.Config, error) {
	if certDir == "" {
		cert, err := selfSigned()
		if err != nil {
			return nil, err
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}, nil
	}
	kp := &keyPair{crt: filepath.Join(certDir, "tls.crt"), key: filepath.Join(certDir, "tls.key")}
	if err := kp.load(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}
	if reload {
		cfg.GetCertificate = kp.get
	} else {
		cfg.Certificates = []tls.Certificate{*kp.cert}
	}
	return cfg, nil
}

type keyPair struct {
	crt, key string
	mu       sync.Mutex
	cert     *tls.Certificate
	modTime  time.Time
	checked  time.Time
}

func (k *keyPair) load() error {
	cert, err := tls.LoadX509KeyPair(k.crt, k.key)
	if err != nil {
		return fmt.Errorf("load TLS key pair from %q: %w", filepath.Dir(k.crt), err)
	}
	k.cert = &cert
	if fi, err := os.Stat(k.crt); err == nil {
		k.modTime = fi.ModTime()
	}
	return nil
}

// get serves the current certificate, reloading it when the file changed;
// a broken new pair keeps the old one.
func (k *keyPair) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if time.Since(k.checked) > time.Second {
		k.checked = time.Now()
		if fi, err := os.Stat(k.crt); err == nil && fi.ModTime() != k.modTime {
			old := k.cert
			if k.load() != nil {
				k.cert = old
			}
		}
	}
	return k.cert, nil
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate TLS key: %w", err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"OpenEPP"}, CommonName: "openepp"},
		DNSNames:              []string{"localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-sign TLS certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
