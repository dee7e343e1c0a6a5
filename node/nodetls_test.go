package node

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	pb "github.com/schat/schat/proto"
)

// testCA writes a CA and n node certificates signed by it, plus one
// certificate from an unrelated CA, and returns their file names.
type certFiles struct{ cert, key, ca string }

func writeCerts(t testing.TB, n int) (nodes []certFiles, stranger certFiles) {
	t.Helper()
	dir := t.TempDir()
	caKey, caCert, caPEM := newCA(t)
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, caPEM, 0o600)
	for i := 0; i < n; i++ {
		nodes = append(nodes, leaf(t, dir, i, caKey, caCert, caFile))
	}
	otherKey, otherCert, _ := newCA(t)
	return nodes, leaf(t, dir, 99, otherKey, otherCert, caFile)
}

func newCA(t testing.TB) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1),
		Subject:   pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return key, cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func leaf(t testing.TB, dir string, i int, caKey *ecdsa.PrivateKey, ca *x509.Certificate,
	caFile string) certFiles {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)),
		Subject: pkix.Name{CommonName: "node"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	f := certFiles{cert: filepath.Join(dir, "n"+string(rune('a'+i%26))+".pem"),
		key: filepath.Join(dir, "k"+string(rune('a'+i%26))+".pem"), ca: caFile}
	os.WriteFile(f.cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(f.key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return f
}

// TestCluster_NodeTLS runs a cluster over mutual TLS; a node whose
// certificate another CA signed cannot join, even with the secret.
func TestCluster_NodeTLS(t *testing.T) {
	certs, stranger := writeCerts(t, 3)
	i := 0
	c := newClusterWith(t, 3, func(cfg *Config) {
		var err error
		cfg.NodeTLS, cfg.NodeClientTLS, err = LoadNodeTLS(certs[i].cert, certs[i].key, certs[i].ca)
		if err != nil {
			t.Fatal(err)
		}
		i++
	})
	ctx := ctxFor(t)
	a, _ := user(t, c.nodes[1].ClientAddr(), false, "ann")
	g := must(a.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "g"}))(t)
	must(a.Send(ctx, g.GroupId, "over tls", ""))(t)
	c.waitConverged()

	cfg := testConfig(t)
	cfg.NodeID = "stranger"
	cfg.Join = []string{c.nodes[0].RaftAddr()}
	cfg.ClusterSecret = string(c.nodes[0].secret)
	var err error
	cfg.NodeTLS, cfg.NodeClientTLS, err = LoadNodeTLS(stranger.cert, stranger.key, stranger.ca)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := New(cfg); err == nil {
		n.Close()
		t.Fatalf("a node with a certificate from another CA joined")
	}
}
