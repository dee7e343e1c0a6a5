package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	pb "github.com/schat/schat/proto"
)

// chatGroup is the one group the fakeChat knows.
const chatGroup = 7

// fakeChat is a Handler with just enough chat for a Session: one group,
// one user, one token, shared by every server it is mounted on, so that
// several servers behave as the nodes of one cluster.
//
//   - login and resume log the connection in; resume, with replay set,
//     first pushes the group's last replay messages again, as a node may
//     push messages that the client also gets by syncing;
//   - send_message appends to the group and pushes the message to every
//     logged-in connection;
//   - sync pages forward, at most pageSize messages a page.
type fakeChat struct {
	pageSize int
	replay   int

	mu       sync.Mutex
	msgs     []*pb.ChatMessage // msgs[i].Seq == i+1
	loggedIn map[*Conn]bool
	reject   bool          // resume fails with UNAUTHENTICATED
	gate     chan struct{} // if set, resume replies wait for it to close
	resumes  chan *Conn    // each resume request, as it arrives
}

func newFakeChat() *fakeChat {
	return &fakeChat{pageSize: 2, replay: 3, loggedIn: make(map[*Conn]bool),
		resumes: make(chan *Conn, 64)}
}

func (h *fakeChat) Connect(*Conn) {}

func (h *fakeChat) Disconnect(c *Conn) {
	h.mu.Lock()
	delete(h.loggedIn, c)
	h.mu.Unlock()
}

func (h *fakeChat) Serve(c *Conn, f *pb.ClientFrame) Reply {
	switch b := f.Body.(type) {
	case *pb.ClientFrame_Login:
		return Reply{Resp: h.login(c, "tok-1")}
	case *pb.ClientFrame_Resume:
		return h.resume(c, b.Resume.Token)
	case *pb.ClientFrame_SendMessage:
		return Reply{Resp: h.send(b.SendMessage)}
	case *pb.ClientFrame_Sync:
		return Reply{Resp: h.sync(b.Sync)}
	}
	return Reply{Resp: &pb.Response{Code: pb.Code_BAD_REQUEST}}
}

func (h *fakeChat) login(c *Conn, token string) *pb.Response {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.loggedIn[c] = true
	g := &pb.GroupSummary{GroupId: chatGroup, LastSeq: uint64(len(h.msgs))}
	return &pb.Response{Body: &pb.Response_Login{Login: &pb.LoginResponse{
		Token: token, Groups: []*pb.GroupSummary{g},
		Limits: &pb.Limits{MaxPage: uint32(h.pageSize)},
	}}}
}

func (h *fakeChat) resume(c *Conn, token string) Reply {
	h.resumes <- c
	h.mu.Lock()
	reject, gate := h.reject || token != "tok-1", h.gate
	for _, m := range h.msgs[max(0, len(h.msgs)-h.replay):] {
		c.Send(EventMessage(&pb.Event{Body: &pb.Event_Message{Message: m}}))
	}
	h.mu.Unlock()
	if reject {
		return Reply{Resp: &pb.Response{Code: pb.Code_UNAUTHENTICATED}}
	}
	return Reply{Wait: func() *pb.Response {
		if gate != nil {
			select {
			case <-gate:
			case <-c.Done():
				return &pb.Response{Code: pb.Code_UNAVAILABLE}
			}
		}
		return h.login(c, "")
	}}
}

func (h *fakeChat) send(r *pb.SendMessageRequest) *pb.Response {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range h.msgs {
		if r.ClientMsgId != "" && m.ClientMsgId == r.ClientMsgId {
			return &pb.Response{Body: &pb.Response_Message{Message: m}}
		}
	}
	m := &pb.ChatMessage{GroupId: r.GroupId, Seq: uint64(len(h.msgs) + 1), Text: r.Text,
		ClientMsgId: r.ClientMsgId}
	h.msgs = append(h.msgs, m)
	ev := EventMessage(&pb.Event{Body: &pb.Event_Message{Message: m}})
	for c := range h.loggedIn {
		c.Send(ev)
	}
	return &pb.Response{Body: &pb.Response_Message{Message: m}}
}

func (h *fakeChat) sync(r *pb.SyncRequest) *pb.Response {
	h.mu.Lock()
	defer h.mu.Unlock()
	limit := h.pageSize
	if r.Limit != 0 {
		limit = min(int(r.Limit), limit)
	}
	from := min(int(r.AfterSeq), len(h.msgs))
	to := min(from+limit, len(h.msgs))
	page := &pb.MessagePage{GroupId: chatGroup, Messages: h.msgs[from:to],
		LastSeq: uint64(len(h.msgs)), More: to < len(h.msgs)}
	return &pb.Response{Body: &pb.Response_Page{Page: page}}
}

// endSessions pushes SessionEnded to every logged-in connection and
// closes it.
func (h *fakeChat) endSessions() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.loggedIn {
		c.SendAndClose(EventMessage(&pb.Event{Body: &pb.Event_SessionEnded{
			SessionEnded: &pb.SessionEnded{Reason: "logged out"}}}), "logged out")
	}
}

// fakeCluster starts n servers sharing h.
func fakeCluster(t *testing.T, h *fakeChat, n int) []*testServer {
	t.Helper()
	out := make([]*testServer, n)
	for i := range out {
		s, err := NewServer(ServerConfig{Handler: h, Logger: testLogger(t)})
		if err != nil {
			t.Fatalf("NewServer: %v", err)
		}
		out[i] = startServerWith(t, s)
	}
	return out
}

// newTestSession starts a Session on addrs and logs it in.
func newTestSession(t *testing.T, addrs ...string) *Session {
	t.Helper()
	s, err := NewSession(testCtx(t), SessionConfig{Addrs: addrs,
		ReconnectWait: 10 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Login(testCtx(t), "ann", "pw"); err != nil {
		t.Fatalf("Login: %v", err)
	}
	return s
}

// sender is a logged-in Client on addr whose events are discarded.
func sender(t *testing.T, addr string) *Client {
	t.Helper()
	c := dial(t, ClientConfig{Addr: addr})
	go func() {
		for range c.Events() {
		}
	}()
	if _, err := c.Login(testCtx(t), "bob", "pw"); err != nil {
		t.Fatalf("Login: %v", err)
	}
	return c
}

func sendN(t *testing.T, c *Client, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		id := fmt.Sprint(i)
		if _, err := c.Send(testCtx(t), chatGroup, id, id); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
}

// messageSeqs reads s's events until a message with seq last arrives and
// returns the seqs of the messages read.
func messageSeqs(t *testing.T, s *Session, last uint64) []uint64 {
	t.Helper()
	var seqs []uint64
	deadline := time.After(testTimeout)
	for {
		select {
		case e, ok := <-s.Events():
			if !ok {
				t.Fatalf("events closed after seqs %v: %v", seqs, s.Err())
			}
			if m := e.GetMessage(); m != nil {
				seqs = append(seqs, m.Seq)
				if m.Seq >= last {
					return seqs
				}
			}
		case <-deadline:
			t.Fatalf("seq %d not delivered within %v; got %v", last, testTimeout, seqs)
		}
	}
}

// wantSeqs fails unless got is from, from+1, ..., to.
func wantSeqs(t *testing.T, got []uint64, from, to uint64) {
	t.Helper()
	ok := len(got) == int(to-from+1)
	for i := 0; ok && i < len(got); i++ {
		ok = got[i] == from+uint64(i)
	}
	if !ok {
		t.Fatalf("got seqs %v, want %d..%d once each in order", got, from, to)
	}
}

func TestSession_Reconnect_CatchesUp(t *testing.T) {
	h := newFakeChat()
	srv := fakeCluster(t, h, 2)
	s := newTestSession(t, srv[0].tcp, srv[1].wsURL)
	bob := sender(t, srv[1].tcp)

	sendN(t, bob, 1, 3)
	wantSeqs(t, messageSeqs(t, s, 3), 1, 3)

	// Messages sent while the reader's server goes away reach it either
	// by catching up or live, and the resume replays the last three.
	if err := srv[0].stop(); err != nil {
		t.Fatal(err)
	}
	sendN(t, bob, 4, 10)
	wantSeqs(t, messageSeqs(t, s, 10), 4, 10)

	r := recv(t, s.Reconnects())
	if r.Addr != srv[1].wsURL || r.Count != 1 || r.Login == nil {
		t.Fatalf("got reconnect %+v, want count 1 to %s with a login", r, srv[1].wsURL)
	}
	if got := s.Client().cfg.Addr; got != srv[1].wsURL {
		t.Fatalf("got client on %s, want %s", got, srv[1].wsURL)
	}

	// The new connection serves requests, and the live stream goes on
	// without repeating anything.
	m, err := s.Send(testCtx(t), chatGroup, "11", "11")
	if err != nil || m.Seq != 11 {
		t.Fatalf("got %v, %v, want seq 11", m, err)
	}
	wantSeqs(t, messageSeqs(t, s, 11), 11, 11)
}

func TestSession_Reconnect_CatchesUpManyPages(t *testing.T) {
	h := newFakeChat()
	h.replay = 0
	srv := fakeCluster(t, h, 2)
	s := newTestSession(t, srv[0].tcp, srv[1].tcp)
	bob := sender(t, srv[1].tcp)

	// Hold the resume until 25 messages were sent, so that all of them
	// come by catching up, two a page.
	h.mu.Lock()
	gate := make(chan struct{})
	h.gate = gate
	h.mu.Unlock()
	if err := srv[0].stop(); err != nil {
		t.Fatal(err)
	}
	recv(t, h.resumes)
	sendN(t, bob, 1, 25)
	close(gate)

	wantSeqs(t, messageSeqs(t, s, 25), 1, 25)
	if r := recv(t, s.Reconnects()); r.CaughtUp != 25 {
		t.Fatalf("got %d caught up, want 25", r.CaughtUp)
	}
}

func TestSession_Reconnect_RequestsWait(t *testing.T) {
	h := newFakeChat()
	srv := fakeCluster(t, h, 2)
	s := newTestSession(t, srv[0].tcp, srv[1].tcp)

	h.mu.Lock()
	gate := make(chan struct{})
	h.gate = gate
	h.mu.Unlock()
	if err := srv[0].stop(); err != nil {
		t.Fatal(err)
	}
	recv(t, h.resumes)

	// While the resume is held the Session has no connection: a request
	// waits, here until its deadline.
	ctx, cancel := context.WithTimeout(testCtx(t), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Send(ctx, chatGroup, "early",
		"early"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the request to wait until its deadline", err)
	}

	done := make(chan error, 1)
	go func() {
		_, err := s.Send(testCtx(t), chatGroup, "waited", "waited")
		done <- err
	}()
	close(gate)
	if err := recv(t, done); err != nil {
		t.Fatalf("Send after the reconnect: %v", err)
	}
	wantSeqs(t, messageSeqs(t, s, 1), 1, 1)
}

func TestSession_Reconnect_SendAfterLossWaits(t *testing.T) {
	h := newFakeChat()
	srv := fakeCluster(t, h, 2)
	s := newTestSession(t, srv[0].tcp, srv[1].tcp)

	// A request made once the connection is known lost waits for the
	// next one instead of failing on the dead one.
	s.Client().lost(errors.New("cut by the test"))
	m, err := s.Send(testCtx(t), chatGroup, "after", "after")
	if err != nil || m.Seq != 1 {
		t.Fatalf("got %v, %v, want seq 1 on the next connection", m, err)
	}
	wantSeqs(t, messageSeqs(t, s, 1), 1, 1)
}

func TestSession_Reconnect_RoundRobin(t *testing.T) {
	h := newFakeChat()
	srv := fakeCluster(t, h, 3)
	s := newTestSession(t, srv[1].tcp, srv[2].tcp, srv[0].tcp)

	// Each loss moves on to the address after the failed one.
	for i, want := range []*testServer{srv[2], srv[0]} {
		cur := s.Client()
		cur.lost(errors.New("cut by the test"))
		r := recv(t, s.Reconnects())
		if r.Addr != want.tcp || r.Count != i+1 {
			t.Fatalf("got reconnect %+v, want count %d to %s", r, i+1, want.tcp)
		}
	}
}

func TestSession_End(t *testing.T) {
	t.Run("close", func(t *testing.T) {
		srv := fakeCluster(t, newFakeChat(), 1)
		s := newTestSession(t, srv[0].tcp)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		drainClosed(t, s.Events())
		drainClosed(t, s.Reconnects())
		if err := s.Err(); !errors.Is(err, ErrClientClosed) {
			t.Fatalf("got Err %v, want ErrClientClosed", err)
		}
		if _, err := s.Send(testCtx(t), chatGroup, "x", "x"); !errors.Is(err, ErrClientClosed) {
			t.Fatalf("got %v, want ErrClientClosed", err)
		}
	})

	t.Run("token rejected", func(t *testing.T) {
		h := newFakeChat()
		srv := fakeCluster(t, h, 3)
		s := newTestSession(t, srv[0].tcp, srv[1].tcp, srv[2].tcp)
		h.mu.Lock()
		h.reject = true
		h.mu.Unlock()
		if err := srv[0].stop(); err != nil {
			t.Fatal(err)
		}
		drainClosed(t, s.Events())
		err := s.Err()
		if !errors.Is(err, ErrSessionEnded) ||
			!errors.Is(err, pb.ErrCode(pb.Code_UNAUTHENTICATED)) {
			t.Fatalf("got Err %v, want ErrSessionEnded with UNAUTHENTICATED", err)
		}
	})

	t.Run("session ended event", func(t *testing.T) {
		h := newFakeChat()
		srv := fakeCluster(t, h, 2)
		s := newTestSession(t, srv[0].tcp, srv[1].tcp)
		h.endSessions()
		var ended bool
		for e := range s.Events() {
			ended = ended || e.GetSessionEnded() != nil
		}
		if !ended {
			t.Fatalf("SessionEnded not delivered")
		}
		if err := s.Err(); !errors.Is(err, ErrSessionEnded) {
			t.Fatalf("got Err %v, want ErrSessionEnded", err)
		}
		select {
		case c := <-h.resumes:
			t.Fatalf("resumed on %v after the server ended the session", c.RemoteAddr())
		default:
		}
	})
}

func TestNewSession_FirstReachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	srv := fakeCluster(t, newFakeChat(), 1)
	s := newTestSession(t, dead, srv[0].tcp)
	if got := s.Client().cfg.Addr; got != srv[0].tcp {
		t.Fatalf("connected to %s, want %s", got, srv[0].tcp)
	}

	_, err = NewSession(testCtx(t), SessionConfig{Addrs: []string{dead, dead}})
	if err == nil {
		t.Fatalf("NewSession with no server succeeded")
	}
}

func TestSessionConfig_Validate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  SessionConfig
		ok   bool
	}{
		{"defaults", SessionConfig{Addrs: []string{"a:1"}}, true},
		{"no addrs", SessionConfig{}, false},
		{"empty addr", SessionConfig{Addrs: []string{"a:1", ""}}, false},
		{"negative wait", SessionConfig{Addrs: []string{"a:1"}, ReconnectWait: -1}, false},
		{"bad client", SessionConfig{Addrs: []string{"a:1"},
			Client: ClientConfig{EventBuffer: -1}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.withDefaults().Validate()
			if tc.ok && err != nil || !tc.ok && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("got %v, want ok %v", err, tc.ok)
			}
		})
	}
}
