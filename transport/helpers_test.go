package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
)

// testTimeout bounds every wait in these tests; reaching it is a failure.
const testTimeout = 10 * time.Second

// testHandler is a small echoing Handler:
//
//   - ping and register are answered at once, echoing their fields;
//   - send_message pushes the message as an event to every connection and
//     is answered through Reply.Wait, which blocks while gate is open;
//   - create_group is refused with NAME_TAKEN;
//   - group_info gets an invalid empty Reply;
//   - logout is answered OK without a body.
type testHandler struct {
	gate   chan struct{} // if set, send_message replies wait for it to close
	served chan *pb.ClientFrame

	mu    sync.Mutex
	conns map[uint64]*Conn

	connected    chan *Conn
	disconnected chan *Conn
	serveCalls   atomic.Int64
}

func newTestHandler() *testHandler {
	return &testHandler{
		served:       make(chan *pb.ClientFrame, 1024),
		conns:        make(map[uint64]*Conn),
		connected:    make(chan *Conn, 1024),
		disconnected: make(chan *Conn, 1024),
	}
}

func (h *testHandler) Connect(c *Conn) {
	h.mu.Lock()
	h.conns[c.ID()] = c
	h.mu.Unlock()
	h.connected <- c
}

func (h *testHandler) Disconnect(c *Conn) {
	h.mu.Lock()
	delete(h.conns, c.ID())
	h.mu.Unlock()
	h.disconnected <- c
}

// broadcast sends m to every connection.
func (h *testHandler) broadcast(m *Message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		c.Send(m)
	}
}

func (h *testHandler) Serve(c *Conn, f *pb.ClientFrame) Reply {
	h.serveCalls.Add(1)
	defer func() { h.served <- f }()
	switch b := f.Body.(type) {
	case *pb.ClientFrame_Ping:
		return Reply{Resp: &pb.Response{Body: &pb.Response_Ping{Ping: &pb.PingResponse{
			ClientTimeMs: b.Ping.ClientTimeMs, ServerTimeMs: 1,
		}}}}
	case *pb.ClientFrame_Register:
		return Reply{Resp: &pb.Response{Body: &pb.Response_Register{
			Register: &pb.RegisterResponse{UserId: 1, LoginName: b.Register.LoginName},
		}}}
	case *pb.ClientFrame_SendMessage:
		return h.send(c, b.SendMessage)
	case *pb.ClientFrame_CreateGroup:
		return Reply{Resp: &pb.Response{Code: pb.Code_NAME_TAKEN, Detail: "taken"}}
	case *pb.ClientFrame_GroupInfo:
		return Reply{}
	case *pb.ClientFrame_Logout:
		return Reply{Resp: &pb.Response{}}
	default:
		return Reply{Resp: &pb.Response{Code: pb.Code_BAD_REQUEST}}
	}
}

func (h *testHandler) send(c *Conn, r *pb.SendMessageRequest) Reply {
	msg := &pb.ChatMessage{GroupId: r.GroupId, Text: r.Text, ClientMsgId: r.ClientMsgId}
	h.broadcast(EventMessage(&pb.Event{Body: &pb.Event_Message{Message: msg}}))
	gate := h.gate
	return Reply{Wait: func() *pb.Response {
		if gate != nil {
			select {
			case <-gate:
			case <-c.Done():
				return &pb.Response{Code: pb.Code_UNAVAILABLE}
			}
		}
		return &pb.Response{Body: &pb.Response_Message{Message: msg}}
	}}
}

// testServer is a Server listening on loopback for TCP and WebSocket.
type testServer struct {
	*Server
	h     *testHandler
	tcp   string // host:port
	wsURL string // ws://host:port/ws
	stop  func() error
}

// startServer starts a server with h, on ports chosen by the system.
// Fields of cfg left zero take the defaults.
func startServer(t testing.TB, h *testHandler, cfg ServerConfig) *testServer {
	t.Helper()
	cfg.Handler = h
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	ts := startServerWith(t, s)
	ts.h = h
	return ts
}

// startServerWith serves s on loopback TCP and WebSocket listeners. Its
// stop closes s and the HTTP server and checks how ServeTCP ended; it runs
// at the end of the test if not called before.
func startServerWith(t testing.TB, s *Server) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- s.ServeTCP(ln) }()

	mux := http.NewServeMux()
	mux.Handle("/ws", s.WebSocket())
	hs := httptest.NewServer(mux)

	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() {
			s.Close()
			hs.Close()
			if err := <-served; !errors.Is(err, ErrServerClosed) {
				stopErr = fmt.Errorf("ServeTCP returned %v, want ErrServerClosed", err)
			}
		})
		return stopErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	return &testServer{
		Server: s,
		tcp:    ln.Addr().String(),
		wsURL:  "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws",
		stop:   stop,
	}
}

// testLogger logs through t at debug level.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{t}, &slog.HandlerOptions{
		Level: slog.LevelDebug,
	}))
}

type tbWriter struct{ t testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// dial connects a Client and closes it when the test ends.
func dial(t testing.TB, cfg ClientConfig) *Client {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Dial %s: %v", cfg.Addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testCtx is a context bounded by testTimeout.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// rawConn is a hand-driven TCP client for frames the Client never sends.
type rawConn struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(testTimeout))
	return &rawConn{t: t, nc: nc, br: bufio.NewReader(nc), bw: bufio.NewWriter(nc)}
}

// writeBytes writes b as one frame.
func (r *rawConn) writeBytes(b []byte) {
	r.t.Helper()
	if err := WriteFrame(r.bw, b); err != nil {
		r.t.Fatalf("WriteFrame: %v", err)
	}
	if err := r.bw.Flush(); err != nil {
		r.t.Fatalf("flush: %v", err)
	}
}

func (r *rawConn) write(f *pb.ClientFrame) {
	r.t.Helper()
	b, err := proto.Marshal(f)
	if err != nil {
		r.t.Fatalf("marshal: %v", err)
	}
	r.writeBytes(b)
}

func (r *rawConn) read() *pb.ServerFrame {
	r.t.Helper()
	p, err := ReadFrame(r.br, 1<<20, nil)
	if err != nil {
		r.t.Fatalf("ReadFrame: %v", err)
	}
	f := new(pb.ServerFrame)
	if err := proto.Unmarshal(p, f); err != nil {
		r.t.Fatalf("unmarshal: %v", err)
	}
	return f
}

// expectClosed reads until the server closes the connection.
func (r *rawConn) expectClosed() {
	r.t.Helper()
	_, err := io.Copy(io.Discard, r.nc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		r.t.Fatalf("connection still open after %v", testTimeout)
	}
}

// waitFor polls cond until it holds or testTimeout passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

// recv receives one value from ch within testTimeout.
func recv[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("timed out receiving")
		panic("unreachable")
	}
}

// drainClosed receives from ch until it is closed, within testTimeout.
func drainClosed[T any](t testing.TB, ch <-chan T) {
	t.Helper()
	timeout := time.After(testTimeout)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatalf("channel still open after %v", testTimeout)
		}
	}
}
