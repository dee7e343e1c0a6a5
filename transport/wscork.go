package transport

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// The WebSocket library flushes every message to the socket as it is
// written, so a burst of events would cost one system call per event. On
// the server, the library is handed a connection that can hold writes
// back: the write goroutine corks it while it writes a burst and uncorks
// it at the burst's flush, which sends everything in one write, as the
// TCP wire's buffer does.

// corkBufferSize bounds what a corked connection holds back; a burst
// beyond it goes out in several writes.
const corkBufferSize = writeBufferSize

// corkBuffers are the held-back bytes of corked connections; an uncorked
// connection holds none.
var corkBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, corkBufferSize)
	return &b
}}

// corkConn is a server WebSocket connection under the library. Its
// methods may be called from the library on any goroutine (a pong is
// written from the reading one), so its state is guarded.
type corkConn struct {
	net.Conn
	writeTimeout time.Duration // per write to the socket; 0: none

	mu     sync.Mutex
	corked bool
	buf    *[]byte // from corkBuffers while corked and holding bytes
}

// Write holds p back while corked, else writes it through.
func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.corked {
		return c.writeThrough(p)
	}
	if c.buf == nil {
		c.buf = corkBuffers.Get().(*[]byte)
	}
	if len(*c.buf)+len(p) > cap(*c.buf) {
		if err := c.drain(); err != nil {
			return 0, err
		}
		if len(p) > cap(*c.buf) {
			return c.writeThrough(p)
		}
	}
	*c.buf = append(*c.buf, p...)
	return len(p), nil
}

// cork makes later writes wait for uncork.
func (c *corkConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// uncork writes everything held back in one write, gives the buffer back
// and lets later writes through.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.drain()
	if c.buf != nil {
		*c.buf = (*c.buf)[:0]
		corkBuffers.Put(c.buf)
		c.buf = nil
	}
	c.corked = false
	return err
}

// drain writes what is held back and keeps the buffer; c.mu is held.
func (c *corkConn) drain() error {
	if c.buf == nil || len(*c.buf) == 0 {
		return nil
	}
	_, err := c.writeThrough(*c.buf)
	*c.buf = (*c.buf)[:0]
	return err
}

// writeThrough writes p to the socket within the write timeout; c.mu is
// held.
func (c *corkConn) writeThrough(p []byte) (int, error) {
	if c.writeTimeout > 0 {
		if err := c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
			return 0, err
		}
	}
	return c.Conn.Write(p)
}

// libraryWriteBuffer is the buffer the library writes a frame's header and
// payload through before they reach the corkConn, which does the
// batching: it can be small.
const libraryWriteBuffer = 512

// corkingWriter is the ResponseWriter given to websocket.Accept: its
// Hijack hands the library a corkConn, kept in conn.
type corkingWriter struct {
	http.ResponseWriter
	writeTimeout time.Duration
	conn         *corkConn
}

// Hijack implements http.Hijacker.
func (w *corkingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("transport: the HTTP connection cannot be taken over")
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil {
		nc.Close()
		return nil, nil, err
	}
	w.conn = &corkConn{Conn: nc, writeTimeout: w.writeTimeout}
	bw := bufio.NewWriterSize(w.conn, libraryWriteBuffer)
	return w.conn, bufio.NewReadWriter(brw.Reader, bw), nil
}
