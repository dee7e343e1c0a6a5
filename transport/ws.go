package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// The WebSocket side uses github.com/coder/websocket rather than our own
// code: RFC 6455 framing with fragmentation, client masking, control frames
// interleaved with data, the close handshake and permessage-deflate
// negotiation are each easy to get subtly wrong, and the library is small,
// dependency-free and fuzzed.

// wsWire carries one frame per WebSocket message.
//
// A server wire decides its write mode from the first data message it
// reads: a client that sends text (protojson) gets text back, one that
// sends binary gets protobuf. Frames written before the first message, such
// as events pushed from Handler.Connect, go out as binary. Later messages of
// the other type are still decoded by their own type. A client wire uses the
// mode it was configured with.
type wsWire struct {
	ws           *websocket.Conn
	max          int
	idle         time.Duration
	writeTimeout time.Duration
	buf          []byte

	decided bool // a server wire has chosen its mode; reader only
	text    atomic.Bool

	// writeCtx bounds every write; cancelling it aborts a write in
	// progress, which makes the library close the connection.
	writeCtx    context.Context
	abortWrites context.CancelFunc

	// cork, on a server wire, holds a burst's messages back until flush;
	// corked is whether it does now. Writer only.
	cork   *corkConn
	corked bool
}

// newWSWire wraps ws; cork is the connection under a server's ws, nil on
// a client.
func newWSWire(ws *websocket.Conn, cork *corkConn, max int,
	idle, writeTimeout time.Duration) *wsWire {
	ws.SetReadLimit(int64(max))
	ctx, cancel := context.WithCancel(context.Background())
	return &wsWire{
		ws:           ws,
		max:          max,
		idle:         idle,
		writeTimeout: writeTimeout,
		writeCtx:     ctx,
		abortWrites:  cancel,
		cork:         cork,
	}
}

func (w *wsWire) readFrame() ([]byte, bool, error) {
	ctx := context.Background()
	if w.idle > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, w.idle)
		defer cancel()
	}
	typ, r, err := w.ws.Reader(ctx)
	if err != nil {
		return nil, false, err
	}
	if cap(w.buf) > retainBuffer {
		w.buf = nil
	}
	p, err := readBounded(r, w.buf[:0], w.max)
	if err != nil {
		if errors.Is(err, websocket.ErrMessageTooBig) {
			err = fmt.Errorf("%w: %w", ErrFrameTooLarge, err)
		}
		return nil, false, err
	}
	w.buf = p

	text := typ == websocket.MessageText
	if !w.decided {
		w.decided = true
		w.text.Store(text)
	}
	return p, text, nil
}

// readBounded reads r to its end into buf, growing it as needed but never
// beyond max bytes.
func readBounded(r io.Reader, buf []byte, max int) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			if len(buf) > max {
				return nil, fmt.Errorf("%w: over %d bytes", ErrFrameTooLarge, max)
			}
			grown := make([]byte, len(buf), min(2*cap(buf)+512, max+1))
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			if len(buf) > max {
				return nil, fmt.Errorf("%w: over %d bytes", ErrFrameTooLarge, max)
			}
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func (w *wsWire) textMode() bool { return w.text.Load() }

func (w *wsWire) writeFrame(payload []byte) error {
	ctx := w.writeCtx
	if w.writeTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, w.writeTimeout)
		defer cancel()
	}
	typ := websocket.MessageBinary
	if w.text.Load() {
		typ = websocket.MessageText
	}
	if w.cork != nil && !w.corked {
		w.cork.cork()
		w.corked = true
	}
	return w.ws.Write(ctx, typ, payload)
}

// flush sends the messages written since the last flush, in one write on
// a server wire; a client's library has sent each already.
func (w *wsWire) flush() error {
	if !w.corked {
		return nil
	}
	w.corked = false
	return w.cork.uncork()
}

// close runs the close handshake. The library bounds it (a few seconds to
// write the close frame and as long again for the peer's answer); a
// connection that abort has already ended returns at once.
func (w *wsWire) close(code websocket.StatusCode, reason string) {
	const maxReason = 123 // a close frame's payload is at most 125 bytes
	if len(reason) > maxReason {
		// Cutting may split a rune; the reason must stay valid UTF-8.
		reason = strings.ToValidUTF8(reason[:maxReason], "")
	}
	w.flush() // the close frame must not wait behind held-back messages
	w.ws.Close(code, reason)
	w.abortWrites()
}

func (w *wsWire) abort() { w.abortWrites() }

// WebSocket returns the handler that upgrades HTTP requests to WebSocket
// connections served like TCP ones. Mount it at /ws on the HTTP port.
// Cross-origin browser requests are refused unless their origin matches
// ServerConfig.OriginPatterns.
func (s *Server) WebSocket() http.Handler {
	return http.HandlerFunc(s.serveWS)
}

func (s *Server) serveWS(rw http.ResponseWriter, r *http.Request) {
	if s.isClosed() {
		http.Error(rw, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	cw := &corkingWriter{ResponseWriter: rw, writeTimeout: s.cfg.WriteTimeout}
	ws, err := websocket.Accept(cw, r, &websocket.AcceptOptions{
		OriginPatterns: s.cfg.OriginPatterns,
	})
	if err != nil {
		// Accept has already written the HTTP error response.
		s.log.Debug("websocket upgrade refused", "remote", r.RemoteAddr, "err", err)
		return
	}
	w := newWSWire(ws, cw.conn, s.cfg.MaxFrame, s.cfg.IdleTimeout, s.cfg.WriteTimeout)
	s.start(w, peerAddr(r.RemoteAddr))
}

// peerAddr turns http.Request.RemoteAddr, which net/http fills from the
// accepted connection (never from headers), into a net.Addr.
func peerAddr(s string) net.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	return stringAddr(s)
}

// stringAddr is a net.Addr for a peer address that is not host:port.
type stringAddr string

func (a stringAddr) Network() string { return "websocket" }
func (a stringAddr) String() string  { return string(a) }
