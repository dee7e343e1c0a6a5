package node

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/schat/schat/fsm"
	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// pushRecorder stands in for the sessions' connections: it records every
// push the hub makes.
type pushRecorder struct {
	pushes map[*session][][]*transport.Message
}

func (r *pushRecorder) push(s *session, ms []*transport.Message) bool {
	r.pushes[s] = append(r.pushes[s], slices.Clone(ms))
	return true
}

// seqs names the frames of one push by their event: a message's seq, or
// 1000 + a notice's ID.
func seqs(t *testing.T, ms []*transport.Message) []uint64 {
	t.Helper()
	var out []uint64
	for _, m := range ms {
		var f pb.ServerFrame
		if err := proto.Unmarshal(m.Binary(), &f); err != nil {
			t.Fatal(err)
		}
		e := f.GetEvent()
		if msg := e.GetMessage(); msg != nil {
			out = append(out, msg.Seq)
		} else {
			out = append(out, 1000+e.NoticeId)
		}
	}
	return out
}

func TestHub_Publish_OnePushPerSessionPerBatch(t *testing.T) {
	const gid, ann, bob = 7, 1, 2
	h := newHub()
	rec := &pushRecorder{pushes: map[*session][][]*transport.Message{}}
	h.push = rec.push
	a1, a2, b1 := &session{}, &session{}, &session{}
	inGroup := func() ([]uint64, error) { return []uint64{gid}, nil }
	for _, s := range []struct {
		s   *session
		uid uint64
	}{{a1, ann}, {a2, ann}, {b1, bob}} {
		if err := h.attach(s.s, s.uid, inGroup); err != nil {
			t.Fatal(err)
		}
	}

	msg := func(seq uint64) fsm.Event {
		return fsm.Event{GroupID: gid, Event: &pb.Event{Body: &pb.Event_Message{
			Message: &pb.ChatMessage{GroupId: gid, Seq: seq, Text: "hi"}}}}
	}
	notice := fsm.Event{Users: []uint64{ann}, Event: &pb.Event{NoticeId: 5}}
	h.publish([]fsm.Event{msg(1), notice, msg(2)})

	for _, tc := range []struct {
		name string
		s    *session
		want []uint64
	}{
		{"ann's first session", a1, []uint64{1, 1005, 2}},
		{"ann's second session", a2, []uint64{1, 1005, 2}},
		{"bob's session", b1, []uint64{1, 2}},
	} {
		pushes := rec.pushes[tc.s]
		if len(pushes) != 1 {
			t.Fatalf("%s: %d pushes for one batch, want 1", tc.name, len(pushes))
		}
		if got := seqs(t, pushes[0]); !slices.Equal(got, tc.want) {
			t.Errorf("%s: pushed %v, want %v in order", tc.name, got, tc.want)
		}
	}
	if rec.pushes[a1][0][0] != rec.pushes[b1][0][0] {
		t.Error("one event became two frames: it must be encoded once for every recipient")
	}

	h.publish([]fsm.Event{msg(3)})
	if n := len(rec.pushes[b1]); n != 2 {
		t.Fatalf("bob's session: %d pushes after two batches, want 2", n)
	}
}

// BenchmarkHub_Publish publishes batches of 8 messages to a group of 1,000
// online members: each message is encoded once, and the sessions' batch
// arrays are reused, so the allocations per batch do not grow with the
// members.
func BenchmarkHub_Publish(b *testing.B) {
	const gid, members, perBatch = 7, 1000, 8
	h := newHub()
	h.push = func(*session, []*transport.Message) bool { return true }
	inGroup := func() ([]uint64, error) { return []uint64{gid}, nil }
	for uid := range uint64(members) {
		if err := h.attach(&session{}, uid+1, inGroup); err != nil {
			b.Fatal(err)
		}
	}
	batch := make([]fsm.Event, perBatch)
	for i := range batch {
		batch[i] = fsm.Event{GroupID: gid, Event: &pb.Event{Body: &pb.Event_Message{
			Message: &pb.ChatMessage{GroupId: gid, Seq: uint64(i + 1), Text: "hi"}}}}
	}
	b.ReportAllocs()
	for b.Loop() {
		h.publish(batch)
	}
}
