package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
)

// ClientConfig configures a Client. Zero fields take their defaults.
type ClientConfig struct {
	// Addr is "host:port" for TCP, or a "ws://host:port/ws" or
	// "wss://host:port/ws" URL for WebSocket. Required.
	Addr string

	// TLS, if set, is used for TCP and wss connections.
	TLS *tls.Config

	// MaxFrame is the largest server frame accepted, in bytes; a longer
	// one ends the connection. Pages of history can be large. Default
	// 8 MiB.
	MaxFrame int

	// HeartbeatInterval is how often a heartbeat is sent to keep the
	// connection from being closed as idle. Default 30s.
	HeartbeatInterval time.Duration

	// DialTimeout bounds connecting, including TLS and WebSocket
	// handshakes. Default 5s.
	DialTimeout time.Duration

	// EventBuffer is the capacity of the Events channel. Default 1024. A
	// client that lets it fill is disconnected with ErrEventsOverflow, as
	// the server disconnects a client that does not read: responses never
	// wait behind undrained events, and the caller resynchronises from its
	// cursors after reconnecting.
	EventBuffer int

	// JSON makes a WebSocket client speak protojson in text messages, as a
	// browser does. It is ignored over TCP.
	JSON bool

	// Logger defaults to slog.Default().
	Logger *slog.Logger

	// written, when set, is shared with other connections (a Session's);
	// otherwise each Client keeps its own.
	written *writeIndexes
}

// DefaultClientConfig returns the defaults. Addr must still be set.
func DefaultClientConfig() ClientConfig {
	return ClientConfig{
		MaxFrame:          8 << 20,
		HeartbeatInterval: 30 * time.Second,
		DialTimeout:       5 * time.Second,
		EventBuffer:       1024,
	}
}

func (c ClientConfig) withDefaults() ClientConfig {
	d := DefaultClientConfig()
	if c.MaxFrame == 0 {
		c.MaxFrame = d.MaxFrame
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = d.HeartbeatInterval
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = d.DialTimeout
	}
	if c.EventBuffer == 0 {
		c.EventBuffer = d.EventBuffer
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports whether c, after defaults, can dial.
func (c ClientConfig) Validate() error {
	switch {
	case c.Addr == "":
		return fmt.Errorf("%w: no Addr", ErrInvalidConfig)
	case c.MaxFrame < 0 || c.EventBuffer < 0:
		return fmt.Errorf("%w: negative MaxFrame or EventBuffer", ErrInvalidConfig)
	case c.HeartbeatInterval < 0 || c.DialTimeout < 0:
		return fmt.Errorf("%w: negative interval", ErrInvalidConfig)
	}
	return nil
}

// isWebSocket reports whether addr names a WebSocket endpoint.
func isWebSocket(addr string) bool {
	return strings.HasPrefix(addr, "ws://") || strings.HasPrefix(addr, "wss://")
}

// clientQueue is how many encoded requests may wait for the writer before
// Do blocks.
const clientQueue = 64

// Client is a connection to a schat server. Its methods are safe for
// concurrent use; requests may be pipelined from many goroutines.
//
// A Client runs two goroutines: a reader, which routes each response to the
// Do that awaits it and each event to Events, and a writer, which sends
// requests and a heartbeat every HeartbeatInterval.
//
// A Client is one connection: when it ends, the Client is done. The state
// that outlives a connection (the pending request table and the Events
// channel) is kept apart from the wire so that a reconnecting client can
// later be built on the same type.
type Client struct {
	cfg  ClientConfig
	log  *slog.Logger
	w    wire
	text bool

	nextID atomic.Uint64
	out    chan []byte // encoded requests for the writer
	events chan *pb.Event
	// written is raised by the reader to the writes each response names,
	// before the response is handed over; Resume sends it.
	written *writeIndexes

	mu      sync.Mutex
	pending map[uint64]chan *pb.Response // nil once done

	done      chan struct{}
	closeOnce sync.Once
	err       error // set before done is closed

	wg sync.WaitGroup
}

// Dial connects to cfg.Addr and starts the client's goroutines. ctx bounds
// the dial only.
func Dial(ctx context.Context, cfg ClientConfig) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()

	var w wire
	var err error
	if isWebSocket(cfg.Addr) {
		w, err = dialWS(dctx, cfg)
	} else {
		w, err = dialTCP(dctx, cfg)
	}
	if err != nil {
		return nil, err
	}

	c := &Client{
		cfg:     cfg,
		log:     cfg.Logger.With("addr", cfg.Addr),
		w:       w,
		text:    w.textMode(),
		out:     make(chan []byte, clientQueue),
		events:  make(chan *pb.Event, cfg.EventBuffer),
		pending: make(map[uint64]chan *pb.Response),
		done:    make(chan struct{}),
		written: cfg.written,
	}
	if c.written == nil {
		c.written = newWriteIndexes()
	}
	c.wg.Add(2)
	go c.readLoop()
	go c.writeLoop()
	return c, nil
}

func dialTCP(ctx context.Context, cfg ClientConfig) (wire, error) {
	var nc net.Conn
	var err error
	if cfg.TLS != nil {
		d := tls.Dialer{Config: cfg.TLS}
		nc, err = d.DialContext(ctx, "tcp", cfg.Addr)
	} else {
		var d net.Dialer
		nc, err = d.DialContext(ctx, "tcp", cfg.Addr)
	}
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", cfg.Addr, err)
	}
	return newTCPWire(nc, cfg.MaxFrame, 0, 0), nil
}

func dialWS(ctx context.Context, cfg ClientConfig) (wire, error) {
	var opts websocket.DialOptions
	if cfg.TLS != nil {
		opts.HTTPClient = &http.Client{
			Transport: &http.Transport{TLSClientConfig: cfg.TLS},
		}
	}
	ws, _, err := websocket.Dial(ctx, cfg.Addr, &opts)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", cfg.Addr, err)
	}
	w := newWSWire(ws, nil, cfg.MaxFrame, 0, 0)
	w.decided = true
	w.text.Store(cfg.JSON)
	return w, nil
}

// Do sends request f and waits for its response, until ctx ends or the
// connection does. It sets f.Id to a fresh id, so f must not be in use
// elsewhere. A non-OK code is not an error here: it comes back as the
// Response. Heartbeats are the client's own business and are refused.
func (c *Client) Do(ctx context.Context, f *pb.ClientFrame) (*pb.Response, error) {
	if _, ok := f.Body.(*pb.ClientFrame_Heartbeat); ok {
		return nil, fmt.Errorf("%w: heartbeat", ErrNotRequest)
	}
	f.Id = c.nextID.Add(1)
	payload, err := c.encode(f)
	if err != nil {
		return nil, err
	}
	ch := make(chan *pb.Response, 1)
	c.mu.Lock()
	if c.pending == nil {
		c.mu.Unlock()
		return nil, c.Err()
	}
	c.pending[f.Id] = ch
	c.mu.Unlock()

	select {
	case c.out <- payload:
	case <-ctx.Done():
		c.forget(f.Id)
		return nil, ctx.Err()
	case <-c.done:
		return nil, c.Err()
	}

	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		c.forget(f.Id)
		return nil, ctx.Err()
	case <-c.done:
		select {
		case r := <-ch: // delivered just before the end
			return r, nil
		default:
			return nil, c.Err()
		}
	}
}

func (c *Client) encode(f *pb.ClientFrame) ([]byte, error) {
	var b []byte
	var err error
	if c.text {
		b, err = protojson.Marshal(f)
	} else {
		b, err = proto.Marshal(f)
	}
	if err != nil {
		return nil, fmt.Errorf("transport: encode request: %w", err)
	}
	return b, nil
}

// forget drops the wait for a request whose caller gave up; a response
// arriving later is discarded.
func (c *Client) forget(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// Events delivers the events the server pushes. It is closed when the
// connection ends. The reader does not drop events: when the channel is
// full it waits, and responses queue behind the event, so a caller must
// keep receiving from Events for its requests to be answered.
func (c *Client) Events() <-chan *pb.Event { return c.events }

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err says why the connection ended: ErrClientClosed after Close, an error
// wrapping ErrConnLost otherwise. It is nil while the connection is up.
func (c *Client) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Close ends the connection and waits for the client's goroutines.
// Requests in progress fail with ErrClientClosed.
func (c *Client) Close() error {
	c.shutdown(ErrClientClosed)
	c.wg.Wait()
	return nil
}

// shutdown ends the client with err unless it has ended already.
func (c *Client) shutdown(err error) {
	c.closeOnce.Do(func() {
		c.err = err
		c.mu.Lock()
		c.pending = nil
		c.mu.Unlock()
		close(c.done)
		c.w.abort()
	})
}

func (c *Client) lost(err error) {
	c.shutdown(fmt.Errorf("%w: %w", ErrConnLost, err))
}

// readLoop is the reader goroutine.
func (c *Client) readLoop() {
	defer c.wg.Done()
	defer close(c.events)
	for {
		payload, text, err := c.w.readFrame()
		if err != nil {
			c.lost(err)
			return
		}
		f := new(pb.ServerFrame)
		if err := decodeFrame(payload, text, f); err != nil {
			c.lost(err)
			return
		}
		switch b := f.Body.(type) {
		case *pb.ServerFrame_Response:
			c.deliver(b.Response)
		case *pb.ServerFrame_Event:
			select {
			case c.events <- b.Event:
			default:
				c.lost(ErrEventsOverflow)
				return
			}
		}
	}
}

// deliver hands r to the Do awaiting it, if any still is. The writes it
// names are noted first, even when nobody waits: they were acknowledged.
func (c *Client) deliver(r *pb.Response) {
	c.written.note(r.Writes)
	c.mu.Lock()
	ch := c.pending[r.Id]
	delete(c.pending, r.Id)
	c.mu.Unlock()
	if ch != nil {
		ch <- r // buffered, and each id is delivered once
	} else {
		c.log.Debug("response nobody waits for", "id", r.Id)
	}
}

// writeLoop is the writer goroutine.
func (c *Client) writeLoop() {
	defer c.wg.Done()
	defer c.w.close(websocket.StatusNormalClosure, "")

	heartbeat, err := c.encode(&pb.ClientFrame{
		Body: &pb.ClientFrame_Heartbeat{Heartbeat: &pb.Heartbeat{}},
	})
	if err != nil {
		c.lost(err)
		return
	}
	tick := time.NewTicker(c.cfg.HeartbeatInterval)
	defer tick.Stop()

	for {
		var payload []byte
		select {
		case payload = <-c.out:
		case <-tick.C:
			payload = heartbeat
		case <-c.done:
			return
		}
		err := c.w.writeFrame(payload)
		if err == nil && len(c.out) == 0 {
			err = c.w.flush()
		}
		if err != nil {
			c.lost(err)
			return
		}
	}
}
