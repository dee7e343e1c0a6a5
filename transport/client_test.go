package transport

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
)

// wireModes are the three ways a client reaches the server.
func wireModes(s *testServer) []struct {
	name string
	cfg  ClientConfig
} {
	return []struct {
		name string
		cfg  ClientConfig
	}{
		{"tcp", ClientConfig{Addr: s.tcp}},
		{"websocket binary", ClientConfig{Addr: s.wsURL}},
		{"websocket json", ClientConfig{Addr: s.wsURL, JSON: true}},
	}
}

func TestClient_RoundTrip(t *testing.T) {
	s := startServer(t, newTestHandler(), ServerConfig{})
	for _, mode := range wireModes(s) {
		t.Run(mode.name, func(t *testing.T) {
			c := dial(t, mode.cfg)
			ctx := testCtx(t)

			ping, err := c.Ping(ctx)
			if err != nil {
				t.Fatalf("Ping: %v", err)
			}
			if ping.ServerTimeMs != 1 || ping.ClientTimeMs == 0 {
				t.Fatalf("got %v, want the echoed client time and server time 1", ping)
			}

			reg, err := c.Register(ctx, &pb.RegisterRequest{LoginName: "ann", Password: "pw"})
			if err != nil {
				t.Fatalf("Register: %v", err)
			}
			if reg.LoginName != "ann" {
				t.Fatalf("got login name %q, want ann", reg.LoginName)
			}

			if err := c.Logout(ctx); err != nil {
				t.Fatalf("Logout: %v", err)
			}

			_, err = c.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "g"})
			var pe *pb.Error
			if !errors.As(err, &pe) || pe.Code != pb.Code_NAME_TAKEN || pe.Detail != "taken" {
				t.Fatalf("got %v, want *pb.Error NAME_TAKEN: taken", err)
			}

			// Do hands non-OK codes back as the Response.
			resp, err := c.Do(ctx, &pb.ClientFrame{Body: &pb.ClientFrame_CreateGroup{
				CreateGroup: &pb.CreateGroupRequest{},
			}})
			if err != nil || resp.Code != pb.Code_NAME_TAKEN {
				t.Fatalf("got %v, %v, want a NAME_TAKEN response", resp, err)
			}

			// A typed helper whose OK response lacks its body.
			if _, err := c.Profiles(ctx, 1); !errors.Is(err, pb.ErrCode(pb.Code_BAD_REQUEST)) {
				t.Fatalf("got %v, want BAD_REQUEST", err)
			}
		})
	}
}

func TestClient_Events(t *testing.T) {
	s := startServer(t, newTestHandler(), ServerConfig{})
	for _, mode := range wireModes(s) {
		t.Run(mode.name, func(t *testing.T) {
			sender := dial(t, mode.cfg)
			listener := dial(t, mode.cfg)
			recv(t, s.h.connected)
			recv(t, s.h.connected)

			msg, err := sender.Send(testCtx(t), 9, "hi all", "c1")
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if msg.Text != "hi all" || msg.ClientMsgId != "c1" {
				t.Fatalf("got %v, want the echoed message", msg)
			}
			for _, c := range []*Client{sender, listener} {
				ev := recv(t, c.Events())
				if ev.GetMessage().GetText() != "hi all" {
					t.Fatalf("got event %v, want the message", ev)
				}
			}
			sender.Close()
			listener.Close()
			waitFor(t, "conns to drop", func() bool { return s.Conns() == 0 })
		})
	}
}

func TestClient_ServerCloseEndsClient(t *testing.T) {
	s := startServer(t, newTestHandler(), ServerConfig{})
	for _, mode := range wireModes(s) {
		t.Run(mode.name, func(t *testing.T) {
			c := dial(t, mode.cfg)
			if _, err := c.Ping(testCtx(t)); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			conn := recv(t, s.h.connected)
			conn.Close("bye")
			recv(t, c.Done())
			drainClosed(t, c.Events())
			if err := c.Err(); !errors.Is(err, ErrConnLost) {
				t.Fatalf("got Err %v, want ErrConnLost", err)
			}
			if _, err := c.Ping(testCtx(t)); !errors.Is(err, ErrConnLost) {
				t.Fatalf("Ping after the end: got %v, want ErrConnLost", err)
			}
		})
	}
}

func TestClient_Close(t *testing.T) {
	h := newTestHandler()
	h.gate = make(chan struct{})
	defer close(h.gate)
	s := startServer(t, h, ServerConfig{})
	for _, mode := range wireModes(s) {
		t.Run(mode.name, func(t *testing.T) {
			c := dial(t, mode.cfg)
			done := make(chan error, 1)
			go func() {
				_, err := c.Send(context.Background(), 1, "never answered", "")
				done <- err
			}()
			recv(t, h.served)
			c.Close()
			if err := recv(t, done); !errors.Is(err, ErrClientClosed) {
				t.Fatalf("pending request: got %v, want ErrClientClosed", err)
			}
			drainClosed(t, c.Events())
			if err := c.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
		})
	}
}

func TestClient_DoContextCancelled(t *testing.T) {
	h := newTestHandler()
	h.gate = make(chan struct{})
	s := startServer(t, h, ServerConfig{})
	c := dial(t, ClientConfig{Addr: s.tcp})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Send(ctx, 1, "slow", "")
		done <- err
	}()
	recv(t, h.served)
	cancel()
	if err := recv(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	// The late response is dropped and the connection stays usable.
	close(h.gate)
	if _, err := c.Ping(testCtx(t)); err != nil {
		t.Fatalf("Ping after a cancelled request: %v", err)
	}
}

func TestClient_RefusesHeartbeat(t *testing.T) {
	s := startServer(t, newTestHandler(), ServerConfig{})
	c := dial(t, ClientConfig{Addr: s.tcp})
	_, err := c.Do(testCtx(t), &pb.ClientFrame{Body: &pb.ClientFrame_Heartbeat{}})
	if !errors.Is(err, ErrNotRequest) {
		t.Fatalf("got %v, want ErrNotRequest", err)
	}
}

func TestClient_SendsHeartbeats(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		nc, err := ln.Accept()
		if err == nil {
			accepted <- nc
		}
	}()
	c := dial(t, ClientConfig{Addr: ln.Addr().String(), HeartbeatInterval: 5 * time.Millisecond})
	nc := recv(t, accepted)
	defer nc.Close()
	r := &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
	for range 3 {
		p, err := ReadFrame(r.br, 1024, nil)
		if err != nil {
			t.Fatalf("ReadFrame: %v", err)
		}
		var f pb.ClientFrame
		if err := proto.Unmarshal(p, &f); err != nil || f.GetHeartbeat() == nil {
			t.Fatalf("got %v (%v), want a heartbeat", &f, err)
		}
	}
	c.Close()
}

func TestClient_OversizedFrameOverWebSocket(t *testing.T) {
	s := startServer(t, newTestHandler(), ServerConfig{MaxFrame: 1024})
	bystander := dial(t, ClientConfig{Addr: s.wsURL})
	c := dial(t, ClientConfig{Addr: s.wsURL})
	_, err := c.Send(testCtx(t), 1, strings.Repeat("x", 2048), "")
	if !errors.Is(err, ErrConnLost) {
		t.Fatalf("got %v, want the connection lost", err)
	}
	var closed *Conn
	for closed == nil {
		if d := recv(t, s.h.disconnected); d.CloseReason() == reasonTooLarge {
			closed = d
		}
	}
	if _, err := bystander.Ping(testCtx(t)); err != nil {
		t.Fatalf("bystander's Ping: %v", err)
	}
}

func TestClient_ServerFrameTooLarge(t *testing.T) {
	s := startServer(t, newTestHandler(), ServerConfig{})
	c := dial(t, ClientConfig{Addr: s.tcp, MaxFrame: 64})
	_, err := c.Send(testCtx(t), 1, strings.Repeat("x", 100), "")
	if !errors.Is(err, ErrConnLost) || !errors.Is(c.Err(), ErrFrameTooLarge) {
		t.Fatalf("got %v (client error %v), want ErrFrameTooLarge", err, c.Err())
	}
}

func TestWebSocket_JSONUnknownRequest(t *testing.T) {
	s := startServer(t, newTestHandler(), ServerConfig{})
	ctx := testCtx(t)
	ws, _, err := websocket.Dial(ctx, s.wsURL, nil)
	if err != nil {
		t.Fatalf("websocket.Dial: %v", err)
	}
	defer ws.CloseNow()

	// A browser from the future: a request type this server does not know.
	req := []byte(`{"id":"5","teleport":{"to":"mars"}}`)
	if err := ws.Write(ctx, websocket.MessageText, req); err != nil {
		t.Fatalf("write: %v", err)
	}
	typ, b, err := ws.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("got message type %v, want text in reply to text", typ)
	}
	var f pb.ServerFrame
	if err := protojson.Unmarshal(b, &f); err != nil {
		t.Fatalf("reply is not protojson: %v: %s", err, b)
	}
	if r := f.GetResponse(); r.GetId() != 5 || r.GetCode() != pb.Code_UNKNOWN_REQUEST {
		t.Fatalf("got %s, want id 5 with UNKNOWN_REQUEST", b)
	}
	if n := s.h.serveCalls.Load(); n != 0 {
		t.Fatalf("got %d Serve calls, want none", n)
	}
}

func TestWebSocket_RemoteAddr(t *testing.T) {
	s := startServer(t, newTestHandler(), ServerConfig{})
	dial(t, ClientConfig{Addr: s.wsURL})
	c := recv(t, s.h.connected)
	addr, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok || !addr.IP.IsLoopback() || addr.Port == 0 {
		t.Fatalf("got remote address %v, want a loopback TCP address", c.RemoteAddr())
	}
}

func TestClientConfig_Validate(t *testing.T) {
	if _, err := Dial(context.Background(), ClientConfig{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("got %v, want ErrInvalidConfig", err)
	}
}

// TestClient_EventsOverflow ends the connection of a client whose caller
// stops draining events, instead of stalling its responses.
func TestClient_EventsOverflow(t *testing.T) {
	s := startServer(t, newTestHandler(), ServerConfig{})
	c := dial(t, ClientConfig{Addr: s.tcp, EventBuffer: 2})
	recv(t, s.h.connected)
	for i := 0; i < 10; i++ {
		s.h.broadcast(testEvent("e"))
	}
	recv(t, c.Done())
	if !errors.Is(c.Err(), ErrEventsOverflow) {
		t.Fatalf("got %v, want ErrEventsOverflow", c.Err())
	}
}
