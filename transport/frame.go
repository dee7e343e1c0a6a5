package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// frameHeaderLen is the size of the length prefix of a TCP frame.
const frameHeaderLen = 4

// WriteFrame writes payload to w as one frame: its length as 4 big-endian
// bytes, then the payload. It does not flush w.
func WriteFrame(w *bufio.Writer, payload []byte) error {
	if uint64(len(payload)) > math.MaxUint32 {
		return fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, len(payload))
	}
	var hdr [frameHeaderLen]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(payload)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// ReadFrame reads one frame from r and returns its payload. The payload is
// stored in buf when it fits and in a new slice otherwise, so a caller that
// passes the previous result back in reuses its memory; the payload is valid
// until buf is reused.
//
// A length over max returns an error wrapping ErrFrameTooLarge before any
// memory is allocated and without reading the body. End of input before the
// first header byte returns io.EOF; end of input inside a frame returns an
// error wrapping io.ErrUnexpectedEOF.
func ReadFrame(r *bufio.Reader, max int, buf []byte) ([]byte, error) {
	hdr, err := r.Peek(frameHeaderLen)
	if err != nil {
		if errors.Is(err, io.EOF) {
			if len(hdr) == 0 {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("transport: frame header: %w", io.ErrUnexpectedEOF)
		}
		return nil, err
	}
	n, err := frameLen(hdr, max)
	if err != nil {
		return nil, err
	}
	if _, err := r.Discard(frameHeaderLen); err != nil {
		return nil, err
	}
	return readBody(r, n, buf)
}

// frameLen decodes a frame header and checks the length against max.
func frameLen(hdr []byte, max int) (uint64, error) {
	n := uint64(binary.BigEndian.Uint32(hdr))
	if max < 0 || n > uint64(max) {
		return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, max)
	}
	return n, nil
}

// readBody reads a frame body of n bytes from r, into buf when it fits.
func readBody(r io.Reader, n uint64, buf []byte) ([]byte, error) {
	if uint64(cap(buf)) >= n {
		buf = buf[:n]
	} else {
		buf = make([]byte, n)
	}
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("transport: frame body: %w", err)
	}
	return buf, nil
}

// jsonIn decodes protojson leniently about fields it does not know, so that
// a request type added by a newer client decodes as a frame without a body
// (answered UNKNOWN_REQUEST) rather than failing.
var jsonIn = protojson.UnmarshalOptions{DiscardUnknown: true}

// decodeFrame decodes one frame into m: protojson when text is set,
// protobuf otherwise. Unknown protobuf fields are kept as unknown fields, so
// a frame whose only field is unknown decodes with its body unset.
//
// The error never quotes the frame, which may hold a password or a
// message: protojson's errors repeat the input they stopped at, so only
// where it stopped is kept of them. Protobuf's name the problem and the
// field, not the data.
func decodeFrame(payload []byte, text bool, m proto.Message) error {
	if !text {
		if err := proto.Unmarshal(payload, m); err != nil {
			return fmt.Errorf("%w: %w", ErrBadFrame, err)
		}
		return nil
	}
	if err := jsonIn.Unmarshal(payload, m); err != nil {
		return fmt.Errorf("%w: not a valid protojson %s of %d bytes%s", ErrBadFrame,
			m.ProtoReflect().Descriptor().Name(), len(payload), jsonErrorPlace(err))
	}
	return nil
}

// jsonErrorPlace is the "(line L:C)" a protojson error gives, or "".
func jsonErrorPlace(err error) string {
	msg := err.Error()
	i := strings.Index(msg, "(line ")
	if i < 0 {
		return ""
	}
	j := strings.IndexByte(msg[i:], ')')
	if j < 0 {
		return ""
	}
	return " at " + msg[i+1:i+j]
}
