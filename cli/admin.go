package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// The operator commands (cluster status and remove, backup) talk to a
// node's HTTP port, which serves HTTPS when the node was started with
// --tls-cert. --addr is HOST:PORT or an http:// or https:// URL; HOST:PORT
// means https when a TLS flag is given and http otherwise.

// tlsFlags are the flags that make a client use TLS, as schat chat takes
// them; server names whose certificate is checked.
func tlsFlags(server string) []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "tls", Usage: "connect with TLS, checking the " + server +
			"'s certificate against the system's CAs"},
		&cli.StringFlag{Name: "tls-ca", Usage: "PEM file of the CA that signed the " + server +
			"'s certificate (implies --tls)"},
		&cli.BoolFlag{Name: "tls-insecure", Usage: "accept any " + server +
			" certificate; for testing only (implies --tls)"},
	}
}

// withAdminTLS adds tlsFlags to an operator command: with any of them,
// --addr HOST:PORT is reached with https.
func withAdminTLS(cmd *cli.Command) *cli.Command {
	cmd.Flags = append(slices.Clone(cmd.Flags), tlsFlags("node")...)
	return cmd
}

// wantsTLS reports whether tlsFlags ask for TLS.
func wantsTLS(c *cli.Context) bool {
	return c.Bool("tls") || c.String("tls-ca") != "" || c.Bool("tls-insecure")
}

// tlsClientConfig is the client TLS configuration tlsFlags give.
func tlsClientConfig(c *cli.Context) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.Bool("tls-insecure")}
	if path := c.String("tls-ca"); path != "" {
		pem, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca: no certificate in %s", path)
		}
	}
	return cfg, nil
}

// adminClient sends the cluster secret as a bearer token to a node's HTTP
// port.
type adminClient struct {
	base   string // scheme://host:port
	secret string
	http   *http.Client
}

// newAdminClient reads --addr and the TLS flags. timeout bounds each
// request as a whole; 0 leaves a streaming request unbounded.
func newAdminClient(c *cli.Context, secret string, timeout time.Duration) (*adminClient, error) {
	addr := strings.TrimSuffix(c.String("addr"), "/")
	if addr == "" {
		return nil, fmt.Errorf("--addr is required")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	switch {
	case strings.HasPrefix(addr, "https://"):
	case strings.HasPrefix(addr, "http://"):
		if wantsTLS(c) {
			return nil, fmt.Errorf("--addr %s is http://, but a TLS flag is given", addr)
		}
	case wantsTLS(c):
		addr = "https://" + addr
	default:
		addr = "http://" + addr
	}
	if strings.HasPrefix(addr, "https://") {
		var err error
		if tr.TLSClientConfig, err = tlsClientConfig(c); err != nil {
			return nil, err
		}
	}
	return &adminClient{base: addr, secret: secret,
		http: &http.Client{Transport: tr, Timeout: timeout}}, nil
}

// do sends an authenticated request for path and returns the response if
// its status is 2xx; otherwise an error with the status and what the node
// said. The caller closes the body.
func (a *adminClient) do(ctx context.Context, method, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.secret)
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return resp, nil
}
