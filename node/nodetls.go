package node

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// LoadNodeTLS builds the two sides of mutual TLS between nodes from a
// node's certificate and key and the CA that signed every node's
// certificate. A peer is accepted when its certificate chains to that CA;
// host names are not checked, since nodes are often addressed by IP and
// the CA is the cluster's own.
func LoadNodeTLS(certFile, keyFile, caFile string) (server, client *tls.Config, err error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("node TLS key pair: %w", err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, nil, fmt.Errorf("node TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("node TLS CA: no certificate in %s", caFile)
	}
	server = &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}
	client = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS13,
		// The chain is verified below against the cluster CA, without a
		// host name.
		InsecureSkipVerify: true, VerifyConnection: verifyChain(pool)}
	return server, client, nil
}

// verifyChain accepts a server whose certificate chains to pool.
func verifyChain(pool *x509.CertPool) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("node TLS: peer sent no certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool,
			Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		return err
	}
}
