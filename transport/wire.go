package transport

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
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
// of small events leaves in few writes. Both are taken from pools for a
// burst and given back when it ends (the write buffer at the flush, the
// read buffer once it is drained), so that idle connections hold none.
const (
	readBufferSize  = 4 << 10
	writeBufferSize = 16 << 10

	// retainBuffer is the largest read buffer kept between frames; a
	// larger frame's buffer is dropped so that an idle connection does not
	// hold on to its largest request.
	retainBuffer = 4 << 10
)

// readers and writers are the buffers of TCP wires between bursts.
var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufferSize) }}
)

// tcpWire frames protobuf payloads with a length prefix over a net.Conn,
// optionally TLS.
type tcpWire struct {
	nc           net.Conn
	hdr          [frameHeaderLen]byte
	br           *bufio.Reader // from readers while it holds unread bytes, else nil
	bw           *bufio.Writer // from writers while a burst is written, else nil
	buf          []byte
	max          int
	idle         time.Duration // read deadline per frame; 0: none
	writeTimeout time.Duration // write deadline per frame; 0: none
}

func newTCPWire(nc net.Conn, max int, idle, writeTimeout time.Duration) *tcpWire {
	return &tcpWire{
		nc:           nc,
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
	var p []byte
	var err error
	if w.br != nil {
		p, err = ReadFrame(w.br, w.max, w.buf)
	} else {
		p, err = w.readFresh()
	}
	if err != nil {
		return nil, false, err
	}
	w.buf = p
	if w.br.Buffered() == 0 {
		w.br.Reset(nil)
		readers.Put(w.br)
		w.br = nil
	}
	return p, false, nil
}

// readFresh reads a frame when nothing is buffered: it waits for the
// header with no buffer held, then reads the body through a pooled reader,
// which takes in whatever follows it too.
func (w *tcpWire) readFresh() ([]byte, error) {
	if k, err := io.ReadFull(w.nc, w.hdr[:]); err != nil {
		if k > 0 && errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("transport: frame header: %w", err)
		}
		return nil, err
	}
	n, err := frameLen(w.hdr[:], w.max)
	if err != nil {
		return nil, err
	}
	w.br = readers.Get().(*bufio.Reader)
	w.br.Reset(w.nc)
	return readBody(w.br, n, w.buf)
}

func (w *tcpWire) textMode() bool { return false }

func (w *tcpWire) writeFrame(payload []byte) error {
	if w.writeTimeout > 0 {
		if err := w.nc.SetWriteDeadline(time.Now().Add(w.writeTimeout)); err != nil {
			return err
		}
	}
	if w.bw == nil {
		w.bw = writers.Get().(*bufio.Writer)
		w.bw.Reset(w.nc)
	}
	return WriteFrame(w.bw, payload)
}

// flush writes what is buffered and gives the buffer back to the pool.
func (w *tcpWire) flush() error {
	if w.bw == nil {
		return nil
	}
	err := w.bw.Flush()
	w.bw.Reset(nil)
	writers.Put(w.bw)
	w.bw = nil
	return err
}

func (w *tcpWire) close(websocket.StatusCode, string) { w.nc.Close() }

func (w *tcpWire) abort() { w.nc.Close() }
