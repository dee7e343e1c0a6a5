package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/schat/schat/node"
	pb "github.com/schat/schat/proto"
)

// parseServe runs `schat serve args` with env set, up to the node's
// configuration, and returns it.
func parseServe(t *testing.T, env map[string]string, args ...string) (node.Config, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var cfg node.Config
	var cfgErr error
	cmd := serveCommand()
	cmd.Action = func(c *cli.Context) error {
		cfg, cfgErr = serveConfig(c)
		return nil
	}
	app := &cli.App{Name: "schat", Commands: []*cli.Command{cmd}}
	if err := app.Run(append([]string{"schat", "serve"}, args...)); err != nil {
		return cfg, err
	}
	return cfg, cfgErr
}

func TestServeConfig_LimitFlags(t *testing.T) {
	d := node.DefaultConfig()
	cfg, err := parseServe(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Limits != d.Limits || cfg.Conns != d.Conns || cfg.SessionTTL != d.SessionTTL {
		t.Fatalf("got %+v %+v %v without flags, want the defaults", cfg.Limits, cfg.Conns,
			cfg.SessionTTL)
	}

	cfg, err = parseServe(t, map[string]string{"SCHAT_MAX_MEMBERS": "7",
		"SCHAT_IDLE_TIMEOUT": "3s"},
		"--max-login-name", "10", "--max-name", "11", "--max-description", "12",
		"--max-message", "13", "--min-password", "4", "--max-password", "14",
		"--max-owned-groups", "15", "--page-size", "16", "--max-page", "17",
		"--max-profiles", "18", "--recall-window", "19s", "--session-ttl", "20m",
		"--max-client-frame", "21000", "--send-queue", "22", "--max-hashes", "3",
		"--hash-wait", "4s", "--max-spools", "23", "--max-user-spools", "2",
		"--upload-idle-timeout", "24s")
	if err != nil {
		t.Fatal(err)
	}
	want := node.Limits{MaxLoginName: 10, MaxName: 11, MaxDescription: 12, MaxMessage: 13,
		MinPassword: 4, MaxPassword: 14, MaxOwnedGroups: 15, MaxMembers: 7, DefaultPage: 16,
		MaxPage: 17, MaxProfiles: 18, RecallWindow: 19 * time.Second}
	if cfg.Limits != want {
		t.Errorf("got limits %+v, want %+v", cfg.Limits, want)
	}
	wantConns := node.ConnLimits{MaxFrame: 21000, SendQueue: 22, IdleTimeout: 3 * time.Second}
	if cfg.Conns != wantConns || cfg.SessionTTL != 20*time.Minute {
		t.Errorf("got %+v and session TTL %v, want %+v and 20m", cfg.Conns, cfg.SessionTTL,
			wantConns)
	}
	if cfg.MaxHashes != 3 || cfg.HashWait != 4*time.Second {
		t.Errorf("got %d hashes and wait %v, want 3 and 4s", cfg.MaxHashes, cfg.HashWait)
	}
	if f := cfg.Files; f.MaxSpools != 23 || f.MaxUserSpools != 2 || f.BodyIdle != 24*time.Second {
		t.Errorf("got upload bounds %d, %d, %v; want 23, 2, 24s", f.MaxSpools, f.MaxUserSpools,
			f.BodyIdle)
	}
}

func TestServeConfig_ZeroLimit(t *testing.T) {
	for _, flag := range append(limitIntFlags, limitDurationFlags...) {
		_, err := parseServe(t, nil, "--"+flag, "0")
		if err == nil || !strings.Contains(err.Error(), "--"+flag) {
			t.Errorf("--%s 0: got %v, want an error naming the flag", flag, err)
		}
	}
}

// TestServe_BadLimit shows `schat serve` refusing a limit out of range
// with the reason, before it opens anything.
func TestServe_BadLimit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out, err := exec.Command(schatBinary(t), "serve", "--data-dir", dir,
		"--client-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--raft-addr", "127.0.0.1:0", "--max-page", "5000").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "max page must be 1..1000, got 5000") {
		t.Fatalf("got exit %v and %q, want the max page refused", err, out)
	}
}

// TestServe_LimitFlags shows limit flags reaching a real server's
// answers: a message, a name and a frame over the limits are refused, and
// a silent connection is closed after the idle timeout.
func TestServe_LimitFlags(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOptions{extra: []string{"--max-message", "8",
		"--max-name", "8", "--max-client-frame", "8192", "--idle-timeout", "1s"}})
	r := script(t, srv.clientAddr, `
		reg protoss 123 zelot 1 shenzhen
		login protoss 123
		create ninechars -
		create eight888 -
	`)
	wantResult(t, r.results[2], "create", "TOO_LONG")
	wantResult(t, r.results[3], "create", codeOK)
	r = script(t, srv.clientAddr, fmt.Sprintf(`
		login protoss 123
		chat 0 %d ninenine9
		chat 0 %[1]d eight888
	`, r.results[3].num("grp_id")))
	wantResult(t, r.results[1], "chat", "TOO_LONG")
	wantResult(t, r.results[2], "chat", codeOK)

	// A ping padded past 8192 bytes closes its connection; a plain one is
	// answered.
	big := rawServerConn(t, srv.clientAddr)
	if err := big.ping(t, 9000); err != io.EOF {
		if err = big.waitClosed(); err != io.EOF {
			t.Fatalf("got %v after a 9000-byte frame, want the connection closed", err)
		}
	}
	small := rawServerConn(t, srv.clientAddr)
	if err := small.ping(t, 0); err != nil {
		t.Fatal(err)
	}
	if resp := small.response(t); resp.Id != 1 || resp.Code != pb.Code_OK {
		t.Fatalf("got %v, want the ping answered", resp)
	}
	// Silent from now on, it is closed within the test's deadline only
	// because the idle timeout is 1s rather than 90s.
	if err := small.waitClosed(); err != io.EOF {
		t.Fatalf("got %v from a silent connection, want it closed", err)
	}
}

// rawConn speaks the TCP framing by hand.
type rawConn struct {
	c net.Conn
	r *bufio.Reader
}

func rawServerConn(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(processWait))
	return &rawConn{c: c, r: bufio.NewReader(c)}
}

// ping sends a ping with request id 1, padded by an unknown field of pad
// bytes. It returns io.EOF if the server closed the connection before it
// took the whole frame.
func (r *rawConn) ping(t testing.TB, pad int) error {
	t.Helper()
	b, err := proto.Marshal(&pb.ClientFrame{Id: 1, Body: &pb.ClientFrame_Ping{
		Ping: &pb.PingRequest{}}})
	if err != nil {
		t.Fatal(err)
	}
	if pad > 0 {
		b = protowire.AppendTag(b, 1000, protowire.BytesType)
		b = protowire.AppendBytes(b, make([]byte, pad))
	}
	_, err = r.c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...))
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return io.EOF
	}
	return err
}

// response reads one server frame and returns its response.
func (r *rawConn) response(t testing.TB) *pb.Response {
	t.Helper()
	var hdr [4]byte
	if _, err := io.ReadFull(r.r, hdr[:]); err != nil {
		t.Fatalf("read response: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(r.r, body); err != nil {
		t.Fatalf("read response: %v", err)
	}
	var f pb.ServerFrame
	if err := proto.Unmarshal(body, &f); err != nil || f.GetResponse() == nil {
		t.Fatalf("got %v (%v), want a response", &f, err)
	}
	return f.GetResponse()
}

// waitClosed reads until the server closes the connection and returns the
// read's error: io.EOF when it did (a reset too, as when it closed with
// the client's bytes unread), a timeout at the deadline.
func (r *rawConn) waitClosed() error {
	_, err := io.Copy(io.Discard, r.r)
	if err == nil || errors.Is(err, syscall.ECONNRESET) {
		return io.EOF
	}
	return err
}
