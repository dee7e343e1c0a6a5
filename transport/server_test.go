package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
)

func TestServerConfig_Validate(t *testing.T) {
	tests := []struct {
		name string
		cfg  ServerConfig
		ok   bool
	}{
		{"defaults", ServerConfig{Handler: newTestHandler()}, true},
		{"no handler", ServerConfig{}, false},
		{"negative queue", ServerConfig{Handler: newTestHandler(), SendQueue: -1}, false},
		{"negative timeout", ServerConfig{Handler: newTestHandler(), IdleTimeout: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewServer(tt.cfg)
			if got := err == nil; got != tt.ok {
				t.Fatalf("got error %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("got %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestServer_Heartbeat(t *testing.T) {
	s := startServer(t, newTestHandler(), ServerConfig{})
	r := dialRaw(t, s.tcp)
	r.write(&pb.ClientFrame{Body: &pb.ClientFrame_Heartbeat{Heartbeat: &pb.Heartbeat{}}})
	if f := r.read(); f.GetHeartbeat() == nil {
		t.Fatalf("got %v, want a heartbeat", f)
	}
	if n := s.h.serveCalls.Load(); n != 0 {
		t.Fatalf("got %d Serve calls, want heartbeats answered without the handler", n)
	}
}

func TestServer_PipelinedInOrder(t *testing.T) {
	h := newTestHandler()
	h.gate = make(chan struct{})
	s := startServer(t, h, ServerConfig{})
	r := dialRaw(t, s.tcp)

	// A request answered through a blocked Wait, then ones answered at
	// once: all replies must come back in request order.
	r.write(&pb.ClientFrame{Id: 1, Body: &pb.ClientFrame_SendMessage{
		SendMessage: &pb.SendMessageRequest{GroupId: 1, Text: "first"},
	}})
	r.write(&pb.ClientFrame{Id: 2, Body: &pb.ClientFrame_Ping{Ping: &pb.PingRequest{}}})
	r.write(&pb.ClientFrame{Body: &pb.ClientFrame_Heartbeat{Heartbeat: &pb.Heartbeat{}}})
	r.writeBytes(unknownRequest(3))
	r.write(&pb.ClientFrame{Id: 4, Body: &pb.ClientFrame_Ping{Ping: &pb.PingRequest{}}})
	recv(t, h.served)
	recv(t, h.served)
	recv(t, h.served)
	close(h.gate)

	// The send_message event was pushed before any reply.
	if ev := r.read().GetEvent(); ev.GetMessage().GetText() != "first" {
		t.Fatalf("got event %v, want the message event first", ev)
	}
	wantIDs := []uint64{1, 2, 0, 3, 4}
	for i, want := range wantIDs {
		f := r.read()
		if want == 0 {
			if f.GetHeartbeat() == nil {
				t.Fatalf("reply %d: got %v, want heartbeat", i, f)
			}
			continue
		}
		if got := f.GetResponse().GetId(); got != want {
			t.Fatalf("reply %d: got id %d, want %d", i, got, want)
		}
	}
}

func TestServer_UnknownRequest(t *testing.T) {
	s := startServer(t, newTestHandler(), ServerConfig{})
	r := dialRaw(t, s.tcp)
	r.writeBytes(unknownRequest(7))
	resp := r.read().GetResponse()
	if resp.GetId() != 7 || resp.GetCode() != pb.Code_UNKNOWN_REQUEST {
		t.Fatalf("got %v, want id 7 with UNKNOWN_REQUEST", resp)
	}
	if n := s.h.serveCalls.Load(); n != 0 {
		t.Fatalf("got %d Serve calls, want none", n)
	}
}

// TestServer_RequestWithoutID answers every frame that is not a heartbeat
// and carries no id, known request or not, with BAD_REQUEST and id 0,
// without serving it; the connection goes on.
func TestServer_RequestWithoutID(t *testing.T) {
	s := startServer(t, newTestHandler(), ServerConfig{})
	r := dialRaw(t, s.tcp)
	ping, err := proto.Marshal(&pb.ClientFrame{Body: &pb.ClientFrame_Ping{Ping: &pb.PingRequest{}}})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"empty": {}, "unknown body": unknownRequest(0),
		"ping": ping} {
		r.writeBytes(b)
		resp := r.read().GetResponse()
		if resp.GetId() != 0 || resp.GetCode() != pb.Code_BAD_REQUEST {
			t.Fatalf("%s: got %v, want id 0 with BAD_REQUEST", name, resp)
		}
	}
	if n := s.h.serveCalls.Load(); n != 0 {
		t.Fatalf("got %d Serve calls, want none", n)
	}
	r.write(&pb.ClientFrame{Id: 5, Body: &pb.ClientFrame_Ping{Ping: &pb.PingRequest{}}})
	if resp := r.read().GetResponse(); resp.GetId() != 5 || resp.GetCode() != pb.Code_OK {
		t.Fatalf("got %v, want the next request served", resp)
	}
}

func TestServer_EmptyReplyIsInternal(t *testing.T) {
	s := startServer(t, newTestHandler(), ServerConfig{})
	c := dial(t, ClientConfig{Addr: s.tcp})
	_, err := c.GroupInfo(testCtx(t), 1)
	if !errors.Is(err, pb.ErrCode(pb.Code_INTERNAL)) {
		t.Fatalf("got %v, want INTERNAL", err)
	}
}

// closedByServer checks that a raw connection which sent something wrong
// is closed and that the server goes on serving others.
func closedByServer(t *testing.T, s *testServer, r *rawConn, reason string) {
	t.Helper()
	r.expectClosed()
	c := recv(t, s.h.disconnected)
	if got := c.CloseReason(); got != reason {
		t.Fatalf("got close reason %q, want %q", got, reason)
	}
	other := dial(t, ClientConfig{Addr: s.tcp})
	if _, err := other.Ping(testCtx(t)); err != nil {
		t.Fatalf("another connection's Ping: %v", err)
	}
}

func TestServer_OversizedFrameCloses(t *testing.T) {
	s := startServer(t, newTestHandler(), ServerConfig{MaxFrame: 1024})
	bystander := dial(t, ClientConfig{Addr: s.tcp})
	recv(t, s.h.connected)

	r := dialRaw(t, s.tcp)
	// Only the header is sent: the server must not wait for the body.
	r.nc.Write(binary.BigEndian.AppendUint32(nil, 1025))
	closedByServer(t, s, r, reasonTooLarge)
	if _, err := bystander.Ping(testCtx(t)); err != nil {
		t.Fatalf("bystander's Ping: %v", err)
	}
}

func TestServer_TruncatedFrameCloses(t *testing.T) {
	s := startServer(t, newTestHandler(), ServerConfig{})
	r := dialRaw(t, s.tcp)
	b := binary.BigEndian.AppendUint32(nil, 10)
	r.nc.Write(append(b, "abc"...))
	r.nc.(interface{ CloseWrite() error }).CloseWrite()
	closedByServer(t, s, r, reasonRead)
}

func TestServer_GarbageCloses(t *testing.T) {
	s := startServer(t, newTestHandler(), ServerConfig{})
	r := dialRaw(t, s.tcp)
	r.writeBytes([]byte{0xff, 0xff, 0xff, 0xff, 0xff})
	closedByServer(t, s, r, reasonBadFrame)
}

func TestServer_IdleTimeout(t *testing.T) {
	s := startServer(t, newTestHandler(), ServerConfig{IdleTimeout: 50 * time.Millisecond})
	r := dialRaw(t, s.tcp)
	r.expectClosed()
	if got := recv(t, s.h.disconnected).CloseReason(); got != reasonIdle {
		t.Fatalf("got close reason %q, want %q", got, reasonIdle)
	}

	// Frames arriving all along keep a connection open well past the
	// timeout: the deadline is renewed for each frame.
	r = dialRaw(t, s.tcp)
	hb := &pb.ClientFrame{Body: &pb.ClientFrame_Heartbeat{Heartbeat: &pb.Heartbeat{}}}
	for start := time.Now(); time.Since(start) < 200*time.Millisecond; {
		r.write(hb)
		if f := r.read(); f.GetHeartbeat() == nil {
			t.Fatalf("got %v, want a heartbeat", f)
		}
	}
}

func TestServer_WebSocketIdleTimeout(t *testing.T) {
	s := startServer(t, newTestHandler(), ServerConfig{IdleTimeout: 50 * time.Millisecond})
	ws, _, err := websocket.Dial(testCtx(t), s.wsURL, nil)
	if err != nil {
		t.Fatalf("websocket.Dial: %v", err)
	}
	defer ws.CloseNow()
	if _, _, err := ws.Read(testCtx(t)); err == nil {
		t.Fatalf("read a message, want the connection closed")
	}
	if got := recv(t, s.h.disconnected).CloseReason(); got != reasonIdle {
		t.Fatalf("got close reason %q, want %q", got, reasonIdle)
	}
}

func TestServer_SlowConsumerDisconnected(t *testing.T) {
	const queue = 16
	s := startServer(t, newTestHandler(), ServerConfig{SendQueue: queue})
	dialRaw(t, s.tcp) // never reads
	c := recv(t, s.h.connected)

	// Events far larger than socket buffers can hold: the queue must fill
	// and the connection be dropped after a bounded number of sends.
	m := testEvent(strings.Repeat("x", 32<<10))
	sent := 0
	for c.Send(m) {
		sent++
		if n := c.out.len(); n > queue {
			t.Fatalf("queue holds %d frames, over SendQueue %d", n, queue)
		}
		if sent > 100000 {
			t.Fatalf("still accepting after %d sends to a reader that never reads", sent)
		}
	}
	if got := recv(t, s.h.disconnected).CloseReason(); got != reasonSlow {
		t.Fatalf("got close reason %q, want %q", got, reasonSlow)
	}
	waitFor(t, "conns to drop", func() bool { return s.Conns() == 0 })
	if c.Send(m) {
		t.Fatalf("Send to a closed connection returned true")
	}
}

func TestServer_CloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()

	func() {
		h := newTestHandler()
		h.gate = make(chan struct{}) // Waits stay blocked until close
		s, err := NewServer(ServerConfig{Handler: h, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		ts := startServerWith(t, s)
		tcp := dial(t, ClientConfig{Addr: ts.tcp})
		ws := dial(t, ClientConfig{Addr: ts.wsURL})
		for _, c := range []*Client{tcp, ws} {
			if _, err := c.Ping(testCtx(t)); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			// A request whose Wait is blocked when the server closes.
			go c.Send(context.Background(), 1, "pending", "")
		}
		recv(t, h.served)
		recv(t, h.served)

		if err := ts.stop(); err != nil {
			t.Fatal(err)
		}
		if s.Conns() != 0 {
			t.Fatalf("got %d conns after Close, want 0", s.Conns())
		}
		for _, c := range []*Client{tcp, ws} {
			<-c.Done()
			c.Close()
		}
	}()

	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

func TestServer_ServeTCPAfterClose(t *testing.T) {
	s, err := NewServer(ServerConfig{Handler: newTestHandler(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	ts := startServerWith(t, s)
	if err := ts.stop(); err != nil {
		t.Fatal(err)
	}
}

// TestConn_SendAndClose writes the frames queued before the final one,
// then the final one, then closes.
func TestConn_SendAndClose(t *testing.T) {
	s := startServer(t, newTestHandler(), ServerConfig{})
	r := dialRaw(t, s.tcp)
	c := recv(t, s.h.connected)
	c.Send(testEvent("first"))
	c.SendAndClose(testEvent("last"), "revoked")
	for _, want := range []string{"first", "last"} {
		if got := r.read().GetEvent().GetMessage().GetText(); got != want {
			t.Fatalf("got event %q, want %q", got, want)
		}
	}
	r.expectClosed()
	if got := recv(t, s.h.disconnected).CloseReason(); got != "revoked" {
		t.Fatalf("got close reason %q, want revoked", got)
	}
}
