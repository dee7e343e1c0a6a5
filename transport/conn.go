package transport

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/coder/websocket"

	pb "github.com/schat/schat/proto"
)

// Reasons a connection is closed, logged and, on WebSocket, sent to the
// peer in the close frame.
const (
	reasonShutdown = "server shutting down"
	reasonSlow     = "slow consumer"
	reasonIdle     = "idle timeout"
	reasonTooLarge = "frame too large"
	reasonBadFrame = "undecodable frame"
	reasonPeer     = "closed by peer"
	reasonRead     = "read failed"
	reasonWrite    = "write failed"
)

// pending is one request awaiting its answer on the reply queue: either a
// handler's Reply for request id, or a ready frame such as a heartbeat.
type pending struct {
	id    uint64
	reply Reply
	msg   *Message
}

// Conn is one client connection, over TCP or WebSocket.
//
// It runs two goroutines, and a third while requests await answers. The
// read goroutine calls Handler.Connect, decodes frames and calls
// Handler.Serve for each request, then, once the connection is closed and
// the others have stopped, Handler.Disconnect. The reply goroutine, which
// the read goroutine starts when a request finds none and which ends when
// no request is left, takes Replies in request order, calls their Wait and
// queues the responses: an idle connection has no stack for it. The write
// goroutine takes everything queued at once and flushes whenever the queue
// is momentarily empty, so a burst leaves in few writes.
//
// Send and Close may be called from any goroutine.
type Conn struct {
	id     uint64
	srv    *Server
	w      wire
	remote net.Addr
	log    *slog.Logger

	out     *queue[*Message] // outbound frames; at most SendQueue
	replies *queue[pending]  // requests awaiting answers; at most MaxInFlight

	done      chan struct{}
	closeOnce sync.Once
	closeCode websocket.StatusCode // set before done is closed
	reason    string               // set before done is closed

	stopped sync.WaitGroup // the reply (while running) and write goroutines

	mu      sync.Mutex
	session any

	// finalMsg, once written, ends the connection with finalReason.
	finalMsg    atomic.Pointer[Message]
	finalReason atomic.Pointer[string]
}

func newConn(s *Server, id uint64, w wire, remote net.Addr) *Conn {
	c := &Conn{
		id:      id,
		srv:     s,
		w:       w,
		remote:  remote,
		log:     s.log.With("conn", id, "remote", remote.String()),
		out:     newQueue[*Message](s.cfg.SendQueue),
		replies: newQueue[pending](s.cfg.MaxInFlight),
		done:    make(chan struct{}),
	}
	c.stopped.Add(1)
	return c
}

// ID is unique among the server's connections since it started.
func (c *Conn) ID() uint64 { return c.id }

// RemoteAddr is the peer's address as the accepted socket reports it;
// nothing the client sends can change it.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// Session returns the value last given to SetSession, nil at first.
func (c *Conn) Session() any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session
}

// SetSession stores the handler's state for this connection, such as the
// logged-in user. The handler's methods and Reply.Wait run on different
// goroutines from those that push events with Send, and all of them may
// read it, so it is guarded; the value itself should be immutable or
// guarded by its owner.
func (c *Conn) SetSession(v any) {
	c.mu.Lock()
	c.session = v
	c.mu.Unlock()
}

// Send queues m for the connection without blocking. If the outbound
// queue is full the client is not keeping up: the connection is closed as
// a slow consumer rather than buffering without bound, and Send returns
// false. It also returns false once the connection is closed.
func (c *Conn) Send(m *Message) bool {
	if c.closed() {
		return false
	}
	return c.queued(c.out.tryPush(m), 1)
}

// SendAll queues every message of ms, in order, in one step: the write
// goroutine finds them queued together and sends them in one write. It
// does not keep ms. Like Send it does not block, and a queue without room
// for all of them closes the connection as a slow consumer.
func (c *Conn) SendAll(ms []*Message) bool {
	if c.closed() {
		return false
	}
	return c.queued(c.out.tryPushAll(ms), len(ms))
}

// queued closes the connection as a slow consumer when a push of n
// messages found no room, and returns ok.
func (c *Conn) queued(ok bool, n int) bool {
	if !ok {
		c.log.Warn("slow consumer disconnected", "queued", c.out.len(), "pushed", n)
		c.closeWith(websocket.StatusPolicyViolation, reasonSlow)
	}
	return ok
}

// SendAndClose queues m as the connection's last frame: once the frames
// before it and m itself are written, the connection is closed with
// reason. If m cannot be queued the connection is closed at once.
func (c *Conn) SendAndClose(m *Message, reason string) {
	c.finalReason.Store(&reason)
	c.finalMsg.Store(m)
	if !c.closed() && !c.out.tryPush(m) {
		c.closeWith(websocket.StatusNormalClosure, reason)
	}
}

// Close closes the connection, giving reason to a WebSocket peer. Queued
// frames not yet written are dropped. It does not wait for the
// connection's goroutines.
func (c *Conn) Close(reason string) {
	c.closeWith(websocket.StatusNormalClosure, reason)
}

// Done is closed when the connection is closed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// CloseReason says why the connection was closed; it is empty until Done
// is closed.
func (c *Conn) CloseReason() string {
	select {
	case <-c.done:
		return c.reason
	default:
		return ""
	}
}

func (c *Conn) closeWith(code websocket.StatusCode, reason string) {
	c.closeOnce.Do(func() {
		c.closeCode, c.reason = code, reason
		close(c.done)
		c.w.abort()
	})
}

func (c *Conn) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// readLoop is the read goroutine: it owns the connection's life.
func (c *Conn) readLoop() {
	defer c.srv.wg.Done()
	c.log.Debug("connection opened")

	c.srv.handler.Connect(c)
	c.closeWith(c.serveFrames())
	c.stopped.Wait()
	c.srv.handler.Disconnect(c)
	c.srv.remove(c)

	c.log.Debug("connection closed", "reason", c.reason)
}

// serveFrames reads and dispatches frames until the connection fails or
// is closed, and returns how to close it.
func (c *Conn) serveFrames() (websocket.StatusCode, string) {
	for !c.closed() {
		payload, text, err := c.w.readFrame()
		if err != nil {
			return readFailure(err)
		}
		f := new(pb.ClientFrame)
		if err := decodeFrame(payload, text, f); err != nil {
			c.log.Debug("undecodable frame", "bytes", len(payload), "text", text, "err", err)
			return websocket.StatusInvalidFramePayloadData, reasonBadFrame
		}

		if c.replies.pushClaim(c.dispatch(f), c.done) {
			c.startReplies()
		}
	}
	return websocket.StatusNormalClosure, ""
}

// dispatch turns one client frame into what the reply queue answers it
// with. Every frame gets an answer: a request without an id is refused
// with id 0 rather than served, since its response could not be matched.
func (c *Conn) dispatch(f *pb.ClientFrame) pending {
	p := pending{id: f.Id}
	_, heartbeat := f.Body.(*pb.ClientFrame_Heartbeat)
	switch {
	case heartbeat:
		p.msg = heartbeatMsg
	case f.Id == 0:
		p.reply.Resp = rejected(pb.Code_BAD_REQUEST, "a request needs a non-zero id")
	case f.Body == nil:
		p.reply.Resp = rejected(pb.Code_UNKNOWN_REQUEST, "request type not known to this server")
	default:
		p.reply = c.srv.handler.Serve(c, f)
	}
	return p
}

// rejected is the response to a request the transport answers itself;
// answer sets its id.
func rejected(code pb.Code, detail string) *pb.Response {
	return &pb.Response{Code: code, Detail: detail}
}

// readFailure classifies a read error.
func readFailure(err error) (websocket.StatusCode, string) {
	var ne net.Error
	switch {
	case errors.Is(err, ErrFrameTooLarge):
		return websocket.StatusMessageTooBig, reasonTooLarge
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET),
		websocket.CloseStatus(err) != -1:
		return websocket.StatusNormalClosure, reasonPeer
	case errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return websocket.StatusPolicyViolation, reasonIdle
	default:
		return websocket.StatusProtocolError, reasonRead
	}
}

// startReplies starts the reply goroutine. Only the read goroutine calls
// it, so the counts it adds to cannot be waited for meanwhile: the read
// goroutine waits for stopped itself, and counts in the server's group.
func (c *Conn) startReplies() {
	c.stopped.Add(1)
	c.srv.wg.Add(1)
	go c.replyLoop()
}

// replyLoop is the reply goroutine. It ends when no request awaits an
// answer, or when the connection is closed.
func (c *Conn) replyLoop() {
	defer c.srv.wg.Done()
	defer c.stopped.Done()
	for !c.closed() {
		p, ok := c.replies.takeOrIdle()
		if !ok {
			return
		}
		m := p.msg
		if m == nil {
			m = c.answer(p)
		}
		if !c.out.push(m, c.done) {
			return
		}
	}
}

// answer turns a handler's Reply into the response frame for request
// p.id, encoded in the connection's current mode so that the writer finds
// it ready and a response that cannot be encoded becomes INTERNAL.
func (c *Conn) answer(p pending) *Message {
	var resp *pb.Response
	switch r := p.reply; {
	case r.Resp != nil && r.Wait == nil:
		resp = r.Resp
	case r.Resp == nil && r.Wait != nil:
		resp = r.Wait()
	}
	if resp == nil {
		c.log.Error("handler gave no response", "id", p.id)
		resp = &pb.Response{Code: pb.Code_INTERNAL}
	}
	resp.Id = p.id

	m := NewMessage(&pb.ServerFrame{Body: &pb.ServerFrame_Response{Response: resp}})
	if _, err := m.encoded(c.w.textMode()); err != nil {
		c.log.Error("response not encodable", "id", p.id, "code", resp.Code, "err", err)
		m = NewMessage(&pb.ServerFrame{Body: &pb.ServerFrame_Response{
			Response: &pb.Response{Id: p.id, Code: pb.Code_INTERNAL},
		}})
	}
	return m
}

// writeLoop is the write goroutine. It ends the connection on the wire
// when it returns.
func (c *Conn) writeLoop() {
	defer c.srv.wg.Done()
	defer c.stopped.Done()
	defer func() { c.w.close(c.closeCode, c.reason) }()
	var batch []*Message
	for {
		var ok bool
		if batch, ok = c.out.takeAll(batch, c.done); !ok {
			return
		}
		for _, m := range batch {
			if !c.write(m) {
				return
			}
		}
		if c.out.len() == 0 {
			if err := c.w.flush(); err != nil {
				c.log.Debug("write failed", "err", err)
				c.closeWith(websocket.StatusGoingAway, reasonWrite)
				return
			}
		}
	}
}

// write writes one frame, and reports whether the connection goes on: a
// failed write or the final frame ends it.
func (c *Conn) write(m *Message) bool {
	if payload, err := m.encoded(c.w.textMode()); err != nil {
		c.log.Error("frame not encodable, dropped", "err", err)
	} else if err := c.w.writeFrame(payload); err != nil {
		c.log.Debug("write failed", "err", err)
		c.closeWith(websocket.StatusGoingAway, reasonWrite)
		return false
	}
	if final := c.finalMsg.Load(); final == m {
		c.w.flush()
		c.closeWith(websocket.StatusNormalClosure, *c.finalReason.Load())
		return false
	}
	return true
}
