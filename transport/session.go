package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	pb "github.com/schat/schat/proto"
)

// SessionConfig configures a Session. Zero fields take their defaults.
type SessionConfig struct {
	// Addrs lists every node's client address, in the forms that
	// ClientConfig.Addr takes. Required.
	Addrs []string

	// Client is the template for each connection; its Addr is ignored
	// and set from Addrs for each attempt.
	Client ClientConfig

	// ReconnectWait is the pause after a round in which every address
	// failed. Default 200ms.
	ReconnectWait time.Duration

	// RequestTimeout bounds each request the Session makes on its own
	// behalf: the Resume on a new connection and each page of catching up.
	// Default 10s.
	RequestTimeout time.Duration

	// Logger defaults to Client.Logger, then to slog.Default().
	Logger *slog.Logger
}

// DefaultSessionConfig returns the defaults. Addrs must still be set.
func DefaultSessionConfig() SessionConfig {
	return SessionConfig{
		Client:         DefaultClientConfig(),
		ReconnectWait:  200 * time.Millisecond,
		RequestTimeout: 10 * time.Second,
	}
}

func (c SessionConfig) withDefaults() SessionConfig {
	d := DefaultSessionConfig()
	if c.ReconnectWait == 0 {
		c.ReconnectWait = d.ReconnectWait
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = d.RequestTimeout
	}
	if c.Logger == nil {
		c.Logger = c.Client.Logger
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Client.Logger == nil {
		c.Client.Logger = c.Logger
	}
	c.Client = c.Client.withDefaults()
	return c
}

// Validate reports whether c, after defaults, can connect.
func (c SessionConfig) Validate() error {
	if len(c.Addrs) == 0 {
		return fmt.Errorf("%w: no Addrs", ErrInvalidConfig)
	}
	for i, a := range c.Addrs {
		if a == "" {
			return fmt.Errorf("%w: Addrs[%d] is empty", ErrInvalidConfig, i)
		}
	}
	if c.ReconnectWait < 0 || c.RequestTimeout < 0 {
		return fmt.Errorf("%w: negative interval", ErrInvalidConfig)
	}
	tmpl := c.Client
	tmpl.Addr = c.Addrs[0]
	return tmpl.Validate()
}

// Reconnect reports that a Session moved to a new connection, resumed its
// login there and delivered the messages it had missed.
type Reconnect struct {
	// Addr is the address now connected.
	Addr string

	// Count is how many reconnects the Session has made, this one
	// included.
	Count int

	// Login is the Resume response on the new connection, or nil if the
	// Session was not logged in. Events other than messages that happened
	// while no connection was up are not replayed; its groups,
	// applications and notices say where things stand now.
	Login *pb.LoginResponse

	// CaughtUp is how many missed messages were delivered on Events
	// before this value was sent.
	CaughtUp int

	// Rewound says that the server's incarnation changed: the deployment
	// was restored from a backup, and its history may end before what
	// this Session delivered, or go on differently after it. Each group's
	// mark was lowered to SharedMark of the group in Login, so the
	// messages sent after the restore are delivered even where they reuse
	// sequence numbers delivered before it; the caller should drop what it
	// keeps of each group beyond that point and take cursors and groups
	// from Login.
	Rewound bool
}

// Session is a logged-in client that outlives the connections under it. It
// holds one connection at a time. When that connection ends without Close,
// the Session connects to the next address, resumes its login with the
// saved token and catches up on the messages it missed, so that Events
// carries each message of the caller's groups once, in seq order, across
// any number of switches.
//
// One goroutine owns the connection. It forwards the connection's events
// to Events and keeps, per group, the highest message seq delivered (the
// mark). After a reconnect it syncs every group of the resume response
// forward from its mark, page by page, delivering what it finds, and from
// then on drops each message event at or below the mark. A group that has
// no mark yet is synced from the ReadSeq the resume response gives it.
//
// Every login response names the server's incarnation. When a resume
// finds another one than the Session knew, the deployment was restored
// from a backup and sequence numbers may have gone back: the Session
// lowers each mark to the point up to which both histories agree (see
// SharedMark) and forgets groups it is no longer in before catching up,
// and reports Rewound.
//
// Each response names the raft indexes of the writes it acknowledged, and
// the Session keeps the highest per shard across its connections; every
// resume sends them, and the new node serves the resumed login only once
// it holds those writes. So the caller reads its own acknowledged writes
// on whichever node it is moved to, even one that was behind.
//
// Only messages are caught up: member changes, recalls, read receipts and
// applications pushed while no connection was up are lost, and the
// Reconnect value carries the resume response for the caller to compare
// with what it knew.
//
// The methods are safe for concurrent use. The request methods use the
// current connection; while the Session is reconnecting they wait for the
// next one or for their ctx. A request in flight when its connection ends
// fails with an error wrapping ErrConnLost and is not retried: the caller
// decides (a Send retried with the same client message ID lands once).
type Session struct {
	cfg    SessionConfig
	log    *slog.Logger
	ctx    context.Context // the Session's life; its cause says why it ended
	cancel context.CancelCauseFunc

	events     chan *pb.Event
	reconnects chan Reconnect
	done       chan struct{}

	// mu guards the fields below. The owner goroutine never holds it
	// while sending on a channel or waiting for the network.
	mu    sync.Mutex
	cur   *Client       // the newest connection
	up    bool          // cur serves requests
	ready chan struct{} // closed while up
	token string
	marks map[uint64]uint64 // group ID -> highest message seq delivered
	inc   uint64            // the server's incarnation at the last login
	ended string            // reason of a SessionEnded event forwarded
	count int
	err   error // set before done is closed
}

// NewSession connects to the first of cfg.Addrs that answers and starts
// the Session's goroutine. ctx bounds the whole life of the Session, not
// only this first connection: when it ends, the Session ends as if closed.
// If no address answers, the error joins every attempt's.
func NewSession(ctx context.Context, cfg SessionConfig) (*Session, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Session{
		cfg:        cfg,
		log:        cfg.Logger,
		events:     make(chan *pb.Event, cfg.Client.EventBuffer),
		reconnects: make(chan Reconnect, 1),
		done:       make(chan struct{}),
		ready:      make(chan struct{}),
		marks:      make(map[uint64]uint64),
	}
	// Every connection notes acknowledged writes in one place, so that
	// each resume names the writes made through the ones before it.
	s.cfg.Client.written = newWriteIndexes()
	s.ctx, s.cancel = context.WithCancelCause(ctx)
	var errs []error
	for i, addr := range cfg.Addrs {
		c, err := s.dial(addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.setUp(c)
		go s.run(c, i)
		return s, nil
	}
	s.cancel(nil)
	return nil, errors.Join(errs...)
}

func (s *Session) dial(addr string) (*Client, error) {
	cfg := s.cfg.Client
	cfg.Addr = addr
	return Dial(s.ctx, cfg)
}

// Events delivers the events of every connection in turn, as one stream:
// message events without duplicates and, after the first login, without
// gaps across reconnects. It is closed when the Session ends. When the
// caller stops receiving, the Session stops reading its connection, which
// the server or the connection's own buffer then ends; once the caller
// receives again the Session reconnects and catches up.
func (s *Session) Events() <-chan *pb.Event { return s.events }

// Reconnects receives a value after each reconnect, once the missed
// messages are on Events. It holds one value: a value not yet received is
// replaced by the next, whose Count tells how many there were. It is
// closed when the Session ends.
func (s *Session) Reconnects() <-chan Reconnect { return s.reconnects }

// Done is closed when the Session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err says why the Session ended: ErrClientClosed after Close, the cause
// of the NewSession ctx ending, or an error wrapping ErrSessionEnded when
// the server ended the login. It is nil while the Session runs.
func (s *Session) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Client returns the newest connection. It may already have ended, and
// the Session may replace it at any time; requests on it are not waited
// for across a reconnect as the Session's own methods are.
func (s *Session) Client() *Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// Close ends the Session and its connection and waits for its goroutine.
// Requests in progress fail; Events and Reconnects are closed.
func (s *Session) Close() error {
	s.cancel(ErrClientClosed)
	<-s.done
	return nil
}

// client returns the connection for a request, waiting while the Session
// reconnects.
func (s *Session) client(ctx context.Context) (*Client, error) {
	for {
		select {
		case <-s.done:
			return nil, s.Err()
		default:
		}
		s.mu.Lock()
		c, up, ready := s.cur, s.up, s.ready
		if up && isDone(c) {
			// Lost, and the Session's goroutine has not seen it yet: wait
			// for the next connection rather than fail at once.
			s.setUpLocked(nil)
			up, ready = false, s.ready
		}
		s.mu.Unlock()
		if up {
			return c, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.done:
			return nil, s.Err()
		}
	}
}

func isDone(c *Client) bool {
	select {
	case <-c.Done():
		return true
	default:
		return false
	}
}

// setUp makes c the connection that requests use or, given nil, makes
// requests wait for the next one.
func (s *Session) setUp(c *Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setUpLocked(c)
}

// setUpLocked is setUp with mu held.
func (s *Session) setUpLocked(c *Client) {
	switch {
	case c != nil:
		s.cur = c
		if !s.up {
			s.up = true
			close(s.ready)
		}
	case s.up:
		s.up = false
		s.ready = make(chan struct{})
	}
}
