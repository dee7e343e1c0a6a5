package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// testConfig is a node on loopback ports chosen by the kernel, with a cheap
// password hash so tests spend their time on the code under test.
func testConfig(t testing.TB) Config {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.RaftAddr = "127.0.0.1:0"
	cfg.ClientAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.PasswordKDF = testKDF
	cfg.RatePerMinute = 100000
	cfg.Raft.HeartbeatTimeout = 200 * time.Millisecond
	cfg.Raft.ElectionTimeout = 200 * time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return cfg
}

// startNode starts a node and waits until it serves; Cleanup closes it.
func startNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	return n
}

// dial connects a client to addr (TCP "host:port" or a ws:// URL).
func dial(t testing.TB, addr string, json bool) *transport.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, transport.ClientConfig{Addr: addr, JSON: json})
	if err != nil {
		t.Fatalf("Dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// must returns v, failing the test given to the result on err:
// must(c.Call(ctx))(t).
func must[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return v
	}
}

// wantCode fails unless err carries the client code want.
func wantCode(t testing.TB, err error, want pb.Code) {
	t.Helper()
	var pe *pb.Error
	if !errors.As(err, &pe) || pe.Code != want {
		t.Fatalf("got error %v, want code %v", err, want)
	}
}

// waitEvent reads c's events until match accepts one, skipping others.
func waitEvent(t testing.TB, c *transport.Client, what string,
	match func(*pb.Event) bool) *pb.Event {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case e, ok := <-c.Events():
			if !ok {
				t.Fatalf("connection ended waiting for %s: %v", what, c.Err())
			}
			if match(e) {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s event within 5s", what)
		}
	}
}

// user registers and logs in a user on a fresh connection.
func user(t testing.TB, addr string, json bool,
	name string) (*transport.Client, *pb.LoginResponse) {
	t.Helper()
	c := dial(t, addr, json)
	ctx := ctxT(t)
	must(c.Register(ctx, &pb.RegisterRequest{LoginName: name, Password: "pw-" + name,
		DisplayName: name + "-display", Sex: pb.Sex_SEX_MALE, Location: "loc-" + name}))(t)
	return c, must(c.Login(ctx, name, "pw-"+name))(t)
}
