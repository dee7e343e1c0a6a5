package transport

import (
	"bufio"
	"net"
	"time"

	"github.com/coder/websocket"
)

// wire is one connection's byte transport, TCP or WebSocket, seen by the
// goroutines of a server Conn or a Client. readFrame is called only by the
// reading goroutine; writeFrame, flush and close only by the writing
// goroutine; abort from any goroutine.
type wire interface {
	// readFrame returns the next frame's payload, valid until the next
	// call, and whether it arrived as text (protojson). A frame over the
	// size limit fails with an error wrapping ErrFrameTooLarge.
	readFrame() (payload []byte, text bool, err error)

	// textMode reports whether frames are written as protojson.
	textMode() bool

	// writeFrame writes one frame, possibly into a buffer that flush
	// empties.
	writeFrame(payload []byte) error
	flush() error

	// close ends the connection, telling the peer why where the protocol
	// allows it; it may wait briefly for the peer to acknowledge.
	close(code websocket.StatusCode, reason string)

	// abort ends any read or write in progress promptly. It does not wait.
	abort()
}

// Buffer sizes of a TCP wire. The writer buffer is larger so that a burst
// of small events leaves in few writes.
const (
	readBufferSize  = 4 << 10
	writeBufferSize = 16 << 10

	// retainBuffer is the largest read buffer kept between frames; a
	// larger frame's buffer is dropped so that an idle connection does not
	// hold on to its largest request.
	retainBuffer = 4 << 10
)

// tcpWire frames protobuf payloads with a length prefix over a net.Conn,
// optionally TLS.
type tcpWire struct {
	nc           net.Conn
	br           *bufio.Reader
	bw           *bufio.Writer
	buf          []byte
	max          int
	idle         time.Duration // read deadline per frame; 0: none
	writeTimeout time.Duration // write deadline per frame; 0: none
}

func newTCPWire(nc net.Conn, max int, idle, writeTimeout time.Duration) *tcpWire {
	return &tcpWire{
		nc:           nc,
		br:           bufio.NewReaderSize(nc, readBufferSize),
		bw:           bufio.NewWriterSize(nc, writeBufferSize),
		max:          max,
		idle:         idle,
		writeTimeout: writeTimeout,
	}
}

func (w *tcpWire) readFrame() ([]byte, bool, error) {
	if w.idle > 0 {
		if err := w.nc.SetReadDeadline(time.Now().Add(w.idle)); err != nil {
			return nil, false, err
		}
	}
	if cap(w.buf) > retainBuffer {
		w.buf = nil
	}
	p, err := ReadFrame(w.br, w.max, w.buf)
	if err != nil {
		return nil, false, err
	}
	w.buf = p
	return p, false, nil
}

func (w *tcpWire) textMode() bool { return false }

func (w *tcpWire) writeFrame(payload []byte) error {
	if w.writeTimeout > 0 {
		if err := w.nc.SetWriteDeadline(time.Now().Add(w.writeTimeout)); err != nil {
			return err
		}
	}
	return WriteFrame(w.bw, payload)
}

func (w *tcpWire) flush() error { return w.bw.Flush() }

func (w *tcpWire) close(websocket.StatusCode, string) { w.nc.Close() }

func (w *tcpWire) abort() { w.nc.Close() }
