package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestChat_LiveEvents keeps two clients connected, one over TCP and one
// over WebSocket, and checks that each sees the other's actions as events,
// as the two terminals of v1's demo did.
func TestChat_LiveEvents(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOptions{})
	p := startChat(t, srv.clientAddr)
	z := startChat(t, "ws://"+srv.httpAddr+"/ws")

	wantResult(t, p.do("reg protoss 123 zelot 1 shenzhen"), "reg", codeOK)
	wantResult(t, p.do("login protoss 123"), "login", codeOK)
	gid := p.do("create room -").num("grp_id")
	zerg := z.do("reg zerg 123 zergling 2 chengdu").num("uid")
	wantResult(t, z.do("login zerg 123"), "login", codeOK)
	wantResult(t, z.do(fmt.Sprintf("apply %d - hi", gid)), "apply", codeOK)

	// The owner is told of the application; the applicant of the decision,
	// as a notice that the client acknowledges by itself.
	p.waitEvent("application", func(e line) bool { return e.num("uid") == zerg })
	wantResult(t, p.do(fmt.Sprintf("audit %d %d 1", gid, zerg)), "audit", codeOK)
	decided := z.waitEvent("decided", func(e line) bool { return e.num("grp_id") == gid })
	if decided["approved"] != true || decided.num("notice_id") == 0 {
		t.Errorf("got %v, want an approval carrying a notice ID", decided)
	}

	// Messages and recalls reach the other member as they happen.
	wantResult(t, z.do(fmt.Sprintf("chat 0 %d hi  there", gid)), "chat", codeOK)
	m := p.waitEvent("message", func(e line) bool { return e.num("sender") == zerg })
	if m.str("text") != "hi  there" || m.str("name") != "zergling" {
		t.Errorf("got message %v, want zergling's hi  there", m)
	}
	seq := p.do(fmt.Sprintf("chat 0 %d welcome", gid)).num("seq")
	z.waitEvent("message", func(e line) bool { return e.num("seq") == seq })
	wantResult(t, p.do(fmt.Sprintf("recall %d %d", gid, seq)), "recall", codeOK)
	z.waitEvent("recalled", func(e line) bool { return e.num("seq") == seq })
	z.finish()

	// A script lingers after its last command and prints what arrives.
	l := startChat(t, srv.clientAddr, "--linger", "3s")
	wantResult(t, l.do("login zerg 123"), "login", codeOK)
	l.stdin.Close()
	wantResult(t, p.do(fmt.Sprintf("chat 0 %d bye", gid)), "chat", codeOK)
	l.waitEvent("message", func(e line) bool { return e.str("text") == "bye" })
	l.finish()
	p.finish()

	// The approval was acknowledged: it is not delivered again.
	r := script(t, "ws://"+srv.httpAddr+"/ws", "login zerg 123")
	if n := r.results[0].list("notices"); len(n) != 0 {
		t.Errorf("got notices %v, want none after the live acknowledgement", n)
	}
}

// TestChat_Reconnect restarts the server under a connected client, which
// dials again and resumes its session at the next command.
func TestChat_Reconnect(t *testing.T) {
	t.Parallel()
	opts := serverOptions{dataDir: t.TempDir(), clientAddr: freeAddr(t),
		httpAddr: freeAddr(t), raftAddr: freeAddr(t)}
	srv := startServer(t, opts)
	c := startChat(t, srv.clientAddr)
	wantResult(t, c.do("reg protoss 123 zelot 1 shenzhen"), "reg", codeOK)
	wantResult(t, c.do("login protoss 123"), "login", codeOK)
	wantResult(t, c.do("create sc2 123"), "create", codeOK)

	srv.stop(t)
	c.waitEvent("disconnected", nil)
	startServer(t, opts)

	groups := c.do("groups")
	wantResult(t, groups, "groups", codeOK)
	if got := groups.num("count"); got != 1 {
		t.Errorf("got %d groups after resuming, want 1", got)
	}
	c.waitEvent("reconnected", func(e line) bool { return e["resumed"] == true })
	c.finish()
}

// TestChat_TLS talks to a server with a self-signed certificate, over TCP
// and over WebSocket.
func TestChat_TLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key := writeSelfSigned(t, dir)
	srv := startServer(t, serverOptions{extra: []string{"--tls-cert", cert, "--tls-key", key}})

	for name, addr := range map[string]string{"tcp": srv.clientAddr,
		"wss": "wss://" + srv.httpAddr + "/ws"} {
		t.Run(name, func(t *testing.T) {
			r := script(t, addr, "ping", "--tls-ca", cert)
			wantResult(t, r.results[0], "ping", codeOK)
			r = script(t, addr, "ping", "--tls-insecure")
			wantResult(t, r.results[0], "ping", codeOK)

			// Without the CA the certificate is refused before any command.
			cmd := exec.Command(schatBinary(t), "chat", "--addr", addr, "--tls")
			cmd.Stdin = strings.NewReader("ping\n")
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), "certificate") {
				t.Errorf("got exit %v and %q, want a certificate error", err, out)
			}
		})
	}
}

// writeSelfSigned writes a certificate for 127.0.0.1 and its key as PEM
// files in dir.
func writeSelfSigned(t testing.TB, dir string) (certPath, keyPath string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "schat test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	write := func(path, typ string, b []byte) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}),
			0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(certPath, "CERTIFICATE", der)
	write(keyPath, "PRIVATE KEY", keyDER)
	return certPath, keyPath
}
