package transport

import (
	"sync"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
)

// Message is one server frame ready to be sent to any number of
// connections. Each encoding is computed at most once, on first use, and
// shared by every connection the Message is sent to, so an event for a
// thousand members is marshalled once per encoding, not once per member.
//
// The frame must not be modified after NewMessage. A Message is safe for
// concurrent use.
type Message struct {
	frame *pb.ServerFrame

	binOnce sync.Once
	bin     []byte
	binErr  error

	jsonOnce sync.Once
	json     []byte
	jsonErr  error
}

// NewMessage wraps f. Nothing is encoded until Binary or JSON is called.
func NewMessage(f *pb.ServerFrame) *Message {
	return &Message{frame: f}
}

// EventMessage wraps an event in a server frame.
func EventMessage(e *pb.Event) *Message {
	return NewMessage(&pb.ServerFrame{Body: &pb.ServerFrame_Event{Event: e}})
}

// Binary returns the protobuf encoding of the frame, or nil if the frame
// cannot be encoded (a string field holding invalid UTF-8). The returned
// slice is shared and must not be modified.
func (m *Message) Binary() []byte {
	b, _ := m.binary()
	return b
}

// JSON returns the protojson encoding of the frame, or nil if it cannot be
// encoded. The returned slice is shared and must not be modified.
func (m *Message) JSON() []byte {
	b, _ := m.text()
	return b
}

func (m *Message) binary() ([]byte, error) {
	m.binOnce.Do(func() {
		m.bin, m.binErr = proto.Marshal(m.frame)
		if m.binErr != nil {
			m.bin = nil
		}
	})
	return m.bin, m.binErr
}

func (m *Message) text() ([]byte, error) {
	m.jsonOnce.Do(func() {
		m.json, m.jsonErr = protojson.Marshal(m.frame)
		if m.jsonErr != nil {
			m.json = nil
		}
	})
	return m.json, m.jsonErr
}

// encoded returns the encoding a wire in text or binary mode sends.
func (m *Message) encoded(text bool) ([]byte, error) {
	if text {
		return m.text()
	}
	return m.binary()
}

// heartbeatMsg answers every client heartbeat. It is immutable, so one
// instance serves all connections.
var heartbeatMsg = NewMessage(&pb.ServerFrame{
	Body: &pb.ServerFrame_Heartbeat{Heartbeat: &pb.Heartbeat{}},
})
