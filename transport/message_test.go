package transport

import (
	"net"
	"sync"
	"testing"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
)

func testEvent(text string) *Message {
	return EventMessage(&pb.Event{Body: &pb.Event_Message{
		Message: &pb.ChatMessage{GroupId: 7, Seq: 1, Text: text},
	}})
}

func TestMessage_EncodesOnce(t *testing.T) {
	m := testEvent("hello")
	var wg sync.WaitGroup
	bins := make([][]byte, 50)
	jsons := make([][]byte, 50)
	for i := range bins {
		wg.Go(func() {
			bins[i] = m.Binary()
			jsons[i] = m.JSON()
		})
	}
	wg.Wait()
	for i := range bins {
		if &bins[i][0] != &bins[0][0] || &jsons[i][0] != &jsons[0][0] {
			t.Fatalf("call %d got its own encoding, want one shared encoding", i)
		}
	}

	var fromBin, fromJSON pb.ServerFrame
	if err := proto.Unmarshal(bins[0], &fromBin); err != nil {
		t.Fatalf("binary does not decode: %v", err)
	}
	if err := protojson.Unmarshal(jsons[0], &fromJSON); err != nil {
		t.Fatalf("JSON does not decode: %v", err)
	}
	if !proto.Equal(&fromBin, m.frame) || !proto.Equal(&fromJSON, m.frame) {
		t.Fatalf("decoded frames differ from the original")
	}
}

func TestMessage_Unencodable(t *testing.T) {
	m := testEvent("\xff\xfe")
	if b := m.Binary(); b != nil {
		t.Fatalf("got %d bytes for invalid UTF-8, want nil", len(b))
	}
	if b := m.JSON(); b != nil {
		t.Fatalf("got %d JSON bytes for invalid UTF-8, want nil", len(b))
	}
}

// discardWire is a wire that never carries anything, for benchmarks of the
// queues alone.
type discardWire struct{}

func (discardWire) readFrame() ([]byte, bool, error)   { return nil, false, net.ErrClosed }
func (discardWire) textMode() bool                     { return false }
func (discardWire) writeFrame([]byte) error            { return nil }
func (discardWire) flush() error                       { return nil }
func (discardWire) close(websocket.StatusCode, string) {}
func (discardWire) abort()                             {}

// BenchmarkMessage_Fanout sends one event to the queues of 1,000
// connections and drains them as their writers would.
func BenchmarkMessage_Fanout(b *testing.B) {
	s, err := NewServer(ServerConfig{Handler: newTestHandler()})
	if err != nil {
		b.Fatal(err)
	}
	conns := make([]*Conn, 1000)
	for i := range conns {
		conns[i] = newConn(s, uint64(i), discardWire{}, stringAddr("bench"))
	}
	// Each connection's writer hands takeAll its previous batch, as
	// writeLoop does, so the queues reuse their arrays.
	bufs := make([][]*Message, len(conns))
	b.ReportAllocs()
	for b.Loop() {
		m := testEvent("a message for everybody in a large group")
		for _, c := range conns {
			if !c.Send(m) {
				b.Fatal("Send refused")
			}
		}
		for i, c := range conns {
			bufs[i], _ = c.out.takeAll(bufs[i], c.done)
			bufs[i][0].encoded(false)
		}
	}
}
