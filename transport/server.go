package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/coder/websocket"

	pb "github.com/schat/schat/proto"
)

// Reply is a handler's answer to one request: Resp when it is ready now, or
// Wait, which the connection's reply goroutine calls in request order (it
// may block, for instance on a raft commit). Exactly one is set.
//
// The transport takes ownership of the Response, whichever way it comes:
// it sets its Id to the request's and encodes it later, so a Response must
// not be shared between replies or modified after it is handed over.
//
// Wait must return, and should return promptly once the connection's Done
// channel is closed: Server.Close waits for a Wait in progress.
type Reply struct {
	Resp *pb.Response
	Wait func() *pb.Response
}

// Handler is the chat logic behind the transport. Its methods are called
// for each connection from that connection's read goroutine, in this order:
// Connect once, Serve for each request, Disconnect once. Different
// connections call them concurrently.
type Handler interface {
	// Connect is called after the connection is accepted, before its first
	// frame is read.
	Connect(c *Conn)

	// Serve handles one request, in the order the client sent them. It
	// must not block for long: the connection reads nothing meanwhile.
	// Work that waits belongs in Reply.Wait.
	Serve(c *Conn, f *pb.ClientFrame) Reply

	// Disconnect is called once, after the connection is closed and its
	// reply and write goroutines have stopped.
	Disconnect(c *Conn)
}

// ServerConfig configures a Server. Zero fields take their defaults.
type ServerConfig struct {
	// Handler serves every connection. Required.
	Handler Handler

	// MaxFrame is the largest client frame accepted, in bytes. A longer
	// one closes the connection. Default 64 KiB.
	MaxFrame int

	// SendQueue is how many outbound frames a connection may have queued.
	// An event that finds the queue full closes the connection as a slow
	// consumer. Default 1024.
	SendQueue int

	// MaxInFlight is how many requests of one connection may await their
	// reply. Beyond it the connection stops reading until replies go out.
	// Default 256.
	MaxInFlight int

	// IdleTimeout closes a connection from which no frame at all has been
	// read for that long. Clients send heartbeats to stay connected.
	// Default 90s.
	IdleTimeout time.Duration

	// WriteTimeout bounds writing one frame; a peer that does not take it
	// in time is disconnected. Default 10s.
	WriteTimeout time.Duration

	// TLS, if set, wraps the listeners given to ServeTCP. The WebSocket
	// endpoint gets TLS from the HTTP server it is mounted on.
	TLS *tls.Config

	// OriginPatterns lists the origins (host patterns, as in
	// path.Match) whose browser pages may open WebSocket connections in
	// addition to the request's own host. Empty: same origin only.
	OriginPatterns []string

	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// DefaultServerConfig returns the defaults. Handler must still be set.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{
		MaxFrame:     64 << 10,
		SendQueue:    1024,
		MaxInFlight:  256,
		IdleTimeout:  90 * time.Second,
		WriteTimeout: 10 * time.Second,
	}
}

// withDefaults returns c with its zero fields replaced by defaults.
func (c ServerConfig) withDefaults() ServerConfig {
	d := DefaultServerConfig()
	if c.MaxFrame == 0 {
		c.MaxFrame = d.MaxFrame
	}
	if c.SendQueue == 0 {
		c.SendQueue = d.SendQueue
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = d.MaxInFlight
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = d.IdleTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports whether c, after defaults, can run a server.
func (c ServerConfig) Validate() error {
	switch {
	case c.Handler == nil:
		return fmt.Errorf("%w: no Handler", ErrInvalidConfig)
	case c.MaxFrame < 0 || c.SendQueue < 0 || c.MaxInFlight < 0:
		return fmt.Errorf("%w: negative MaxFrame, SendQueue or MaxInFlight",
			ErrInvalidConfig)
	case c.IdleTimeout < 0 || c.WriteTimeout < 0:
		return fmt.Errorf("%w: negative timeout", ErrInvalidConfig)
	}
	return nil
}

// Server accepts client connections over TCP and WebSocket and runs each
// through the Handler.
//
// Every goroutine the server starts is tracked: two or three per
// connection (read, write, and reply while requests await answers) and one
// per ServeTCP call. Close waits for all of them.
type Server struct {
	cfg     ServerConfig
	log     *slog.Logger
	handler Handler

	wg sync.WaitGroup // every goroutine started, and ServeTCP calls

	mu        sync.Mutex
	closed    bool
	quit      chan struct{} // closed with closed set
	nextID    uint64
	conns     map[uint64]*Conn
	listeners map[*net.Listener]struct{}
}

// NewServer returns a server configured by cfg. It listens on nothing until
// ServeTCP is called or WebSocket is mounted.
func NewServer(cfg ServerConfig) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		handler:   cfg.Handler,
		quit:      make(chan struct{}),
		conns:     make(map[uint64]*Conn),
		listeners: make(map[*net.Listener]struct{}),
	}, nil
}

// ServeTCP accepts connections on ln, wrapped in TLS if configured, until
// ln is closed or Close is called, and closes ln when it returns. It
// returns ErrServerClosed after Close and the accept error otherwise.
func (s *Server) ServeTCP(ln net.Listener) error {
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[&ln] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()

	defer func() {
		s.mu.Lock()
		delete(s.listeners, &ln)
		s.mu.Unlock()
		ln.Close()
		s.wg.Done()
	}()
	s.log.Info("accepting client connections", "addr", ln.Addr().String())
	return s.acceptLoop(ln)
}

// acceptLoop accepts until ln fails for good. Temporary failures, such as
// running out of file descriptors, are retried after a growing pause.
func (s *Server) acceptLoop(ln net.Listener) error {
	var pause time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				pause = min(max(2*pause, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed, retrying", "err", err, "pause", pause)
				if !s.pause(pause) {
					return ErrServerClosed
				}
				continue
			}
			return fmt.Errorf("transport: accept: %w", err)
		}
		pause = 0
		w := newTCPWire(nc, s.cfg.MaxFrame, s.cfg.IdleTimeout, s.cfg.WriteTimeout)
		s.start(w, nc.RemoteAddr())
	}
}

// isTemporary reports whether an accept error is worth retrying.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// pause waits for d, or returns false early if the server closes.
func (s *Server) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.quit:
		return false
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// start registers a connection on w and starts its goroutines, or closes w
// if the server is closed.
func (s *Server) start(w wire, remote net.Addr) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		w.close(websocket.StatusGoingAway, reasonShutdown)
		return
	}
	s.nextID++
	c := newConn(s, s.nextID, w, remote)
	s.conns[c.id] = c
	s.wg.Add(2)
	s.mu.Unlock()

	go c.readLoop()
	go c.writeLoop()
}

// remove forgets a connection whose goroutines are ending.
func (s *Server) remove(c *Conn) {
	s.mu.Lock()
	delete(s.conns, c.id)
	s.mu.Unlock()
}

// Conns returns the number of open connections.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Close stops accepting, closes every connection and waits until all the
// goroutines the server started have returned, Handler.Disconnect having
// been called for every connection. It is safe to call more than once, but
// not from a Handler method, which Close would wait for.
func (s *Server) Close() error {
	s.mu.Lock()
	first := !s.closed
	if first {
		s.closed = true
		close(s.quit)
	}
	lns := make([]net.Listener, 0, len(s.listeners))
	for ln := range s.listeners {
		lns = append(lns, *ln)
	}
	conns := make([]*Conn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	for _, ln := range lns {
		ln.Close()
	}
	for _, c := range conns {
		c.closeWith(websocket.StatusGoingAway, reasonShutdown)
	}
	s.wg.Wait()
	if first {
		s.log.Info("client transport closed", "conns", len(conns))
	}
	return nil
}
