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
	"path/filepath"
	"time"

	"github.com/go-logr/logr"

	"github.com/openepp/openepp/pkg/certfile"
)

// TLSConfig returns the ext_proc server's TLS config: the key pair in
// certDir (tls.crt, tls.key) when given, else a fresh self-signed
// certificate. With reload, a changed key pair on disk is picked up at the
// next handshake (certfile.KeyPair; a broken new pair keeps the old one).
func TLSConfig(certDir string, reload bool, log logr.Logger) (*tls.Config, error) {
	if certDir == "" {
		cert, err := selfSigned()
		if err != nil {
			return nil, err
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}, nil
	}
	kp, err := certfile.LoadKeyPair(filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key"), log)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}
	if reload {
		cfg.GetCertificate = kp.GetCertificate
	} else {
		cfg.Certificates = []tls.Certificate{*kp.Current()}
	}
	return cfg, nil
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
