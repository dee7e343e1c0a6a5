package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestServer_TLS(t *testing.T) {
	// The HTTPS test server's certificate, valid for 127.0.0.1, serves both
	// the TLS-wrapped TCP listener and wss.
	var s *Server
	hs := httptest.NewUnstartedServer(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) { s.WebSocket().ServeHTTP(w, r) }))
	hs.StartTLS()
	defer hs.Close()

	h := newTestHandler()
	var err error
	s, err = NewServer(ServerConfig{
		Handler: h,
		TLS:     &tls.Config{Certificates: hs.TLS.Certificates},
		Logger:  testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.ServeTCP(ln) }()
	defer func() {
		s.Close()
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("ServeTCP returned %v, want ErrServerClosed", err)
		}
	}()

	roots := x509.NewCertPool()
	roots.AddCert(hs.Certificate())
	clientTLS := &tls.Config{RootCAs: roots}
	addrs := []string{
		ln.Addr().String(),
		"wss" + strings.TrimPrefix(hs.URL, "https") + "/ws",
	}
	for _, addr := range addrs {
		c := dial(t, ClientConfig{Addr: addr, TLS: clientTLS})
		if _, err := c.Ping(testCtx(t)); err != nil {
			t.Fatalf("Ping over %s: %v", addr, err)
		}
		c.Close()
	}

	// A client that does not trust the certificate cannot connect.
	_, err = Dial(testCtx(t), ClientConfig{Addr: addrs[0], TLS: &tls.Config{}})
	if err == nil {
		t.Fatalf("dial with an untrusted certificate succeeded")
	}
}
