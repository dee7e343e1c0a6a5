package fsm

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
)

// recallWindow is the recall window the message tests run with.
const recallWindow = 60_000

func recallCmd(actor, seq uint64) *pb.Command {
	return cmd(&pb.RecallCmd{GroupId: g1, ActorId: actor, Seq: seq,
		Limits: &pb.GroupLimits{RecallWindowMs: recallWindow}})
}

func TestFSM_Message_Refused(t *testing.T) {
	sendType := func(typ pb.MessageType) *pb.Command {
		return cmd(&pb.SendCmd{GroupId: g1, SenderId: bob, Type: typ, Text: "x"})
	}
	// In the world g1 holds CREATED (1) and bob's JOINED (2): bobSays
	// leaves bob's message at seq 3.
	bobSays := func(t testing.TB, h *harness) { h.say(t, g1, bob, "hi") }
	late := func(t testing.TB, h *harness) { bobSays(t, h); h.now += recallWindow + 1 }
	recalled := func(t testing.TB, h *harness) { bobSays(t, h); h.must(t, recallCmd(bob, 3)) }
	daveJoins := func(t testing.TB, h *harness) {
		bobSays(t, h)
		h.must(t, cmd(&pb.DecideCmd{GroupId: g1, OwnerId: alice, UserId: dave, Approve: true}))
	}
	runRefusals(t, newWorld, []refusal{
		{name: "send to missing group", want: pb.Code_NOT_FOUND,
			cmd: cmd(&pb.SendCmd{GroupId: 9, SenderId: bob, Text: "x"})},
		{name: "send as non-member", want: pb.Code_NOT_MEMBER,
			cmd: cmd(&pb.SendCmd{GroupId: g1, SenderId: carol, Text: "x"})},
		{name: "send as applicant", want: pb.Code_NOT_MEMBER,
			cmd: cmd(&pb.SendCmd{GroupId: g1, SenderId: dave, Text: "x"})},
		{name: "send image", want: pb.Code_INVALID_ARGUMENT,
			cmd: sendType(pb.MessageType_MESSAGE_TYPE_IMAGE)},
		{name: "send voice", want: pb.Code_INVALID_ARGUMENT,
			cmd: sendType(pb.MessageType_MESSAGE_TYPE_VOICE)},
		{name: "send video", want: pb.Code_INVALID_ARGUMENT,
			cmd: sendType(pb.MessageType_MESSAGE_TYPE_VIDEO)},
		{name: "send file", want: pb.Code_INVALID_ARGUMENT,
			cmd: sendType(pb.MessageType_MESSAGE_TYPE_FILE)},
		{name: "send system", want: pb.Code_INVALID_ARGUMENT,
			cmd: sendType(pb.MessageType_MESSAGE_TYPE_SYSTEM)},
		{name: "send unknown type", want: pb.Code_INVALID_ARGUMENT, cmd: sendType(99)},
		{name: "recall in missing group", want: pb.Code_NOT_FOUND,
			cmd: cmd(&pb.RecallCmd{GroupId: 9, ActorId: bob, Seq: 1})},
		{name: "recall missing message", want: pb.Code_NOT_FOUND, cmd: recallCmd(bob, 50)},
		{name: "recall as non-member", want: pb.Code_NOT_MEMBER, setup: bobSays,
			cmd: recallCmd(carol, 3)},
		{name: "recall system message", want: pb.Code_PERMISSION_DENIED,
			cmd: recallCmd(alice, 1)},
		{name: "recall another's message", want: pb.Code_PERMISSION_DENIED, setup: daveJoins,
			cmd: recallCmd(dave, 3)},
		{name: "recall after window", want: pb.Code_RECALL_EXPIRED, setup: late,
			cmd: recallCmd(bob, 3)},
		{name: "recall twice", want: pb.Code_ALREADY_DONE, setup: recalled,
			cmd: recallCmd(bob, 3)},
		{name: "owner recalls twice", want: pb.Code_ALREADY_DONE, setup: recalled,
			cmd: recallCmd(alice, 3)},
		{name: "mark read in missing group", want: pb.Code_NOT_FOUND,
			cmd: cmd(&pb.MarkReadCmd{GroupId: 9, UserId: bob, Seq: 1})},
		{name: "mark read as non-member", want: pb.Code_NOT_MEMBER,
			cmd: cmd(&pb.MarkReadCmd{GroupId: g1, UserId: carol, Seq: 1})},
	})
}

func TestFSM_Send_Stores(t *testing.T) {
	h := newWorld(t)
	h.now += 5
	res := h.must(t, cmd(&pb.SendCmd{GroupId: g1, SenderId: bob, SenderName: "Bob",
		Text: "hello", ClientMsgId: "c1"}))

	want := &pb.ChatMessage{GroupId: g1, Seq: 3, SenderId: bob, SenderName: "Bob",
		TimeMs: h.now, Text: "hello", ClientMsgId: "c1"}
	if !proto.Equal(res.Message, want) {
		t.Fatalf("got result %v, want %v", res.Message, want)
	}
	if got := h.message(t, g1, 3); !proto.Equal(got, want) {
		t.Fatalf("got stored %v, want %v", got, want)
	}
	evs := h.take()
	wantEvents(t, evs, "g1001 u[] message")
	if !proto.Equal(evs[0].Event.GetMessage(), want) {
		t.Fatalf("got event message %v, want %v", evs[0].Event.GetMessage(), want)
	}
	wantUint(t, h.group(t, g1).LastSeq, 3)
	wantUint(t, h.member(t, g1, bob).ReadSeq, 3)
	wantUint(t, h.member(t, g1, alice).ReadSeq, 1)
}

func TestFSM_Send_GapFreeSeqs(t *testing.T) {
	h := newWorld(t)
	next := h.group(t, g1).LastSeq + 1
	for i := range 300 {
		var seq uint64
		switch {
		case i%50 == 7:
			// System notes share the sequence.
			h.must(t, cmd(&pb.UpdateGroupCmd{GroupId: g1, ActorId: alice,
				Name: proto.String(fmt.Sprint("name ", i))}))
			seq = h.group(t, g1).LastSeq
		case i%3 == 0:
			seq = h.say(t, g1, alice, fmt.Sprint("a", i))
		default:
			seq = h.say(t, g1, bob, fmt.Sprint("b", i))
		}
		if seq != next {
			t.Fatalf("message %d: got seq %d, want %d", i, seq, next)
		}
		next++
	}
	for seq := uint64(1); seq < next; seq++ {
		if m := h.message(t, g1, seq); m == nil || m.Seq != seq {
			t.Fatalf("got message %v at seq %d, want one", m, seq)
		}
	}
	if m := h.message(t, g1, next); m != nil {
		t.Fatalf("got message %v past the last seq, want none", m)
	}
}

func TestFSM_Send_Dedup(t *testing.T) {
	h := newWorld(t)
	send := func(uid uint64, cid, text string) *Result {
		return h.must(t, cmd(&pb.SendCmd{GroupId: g1, SenderId: uid, Text: text,
			ClientMsgId: cid}))
	}
	first := send(bob, "c1", "one")
	h.take()
	before := h.dump(t, false)

	again := send(bob, "c1", "one (retry)")

	if !again.Existing || !proto.Equal(again.Message, first.Message) {
		t.Fatalf("got %v existing %t, want %v existing", again.Message, again.Existing,
			first.Message)
	}
	wantEvents(t, h.take())
	sameState(t, h.dump(t, false), before)

	tests := []struct {
		name string
		uid  uint64
		cid  string
		seq  uint64
	}{
		{"other sender same id", alice, "c1", 4},
		{"same sender new id", bob, "c2", 5},
		{"no id", bob, "", 6},
		{"no id again", bob, "", 7},
		{"first id once more", bob, "c1", 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := send(tc.uid, tc.cid, "x").Message.Seq; got != tc.seq {
				t.Fatalf("got seq %d, want %d", got, tc.seq)
			}
		})
	}
}

func TestFSM_Recall_Rules(t *testing.T) {
	tests := []struct {
		name   string
		sender uint64
		actor  uint64
		after  int64
		window int64
		want   pb.Code
	}{
		{"sender at once", bob, bob, 0, recallWindow, pb.Code_OK},
		{"sender at window end", bob, bob, recallWindow, recallWindow, pb.Code_OK},
		{"sender after window", bob, bob, recallWindow + 1, recallWindow, pb.Code_RECALL_EXPIRED},
		{"sender without window", bob, bob, 1 << 40, 0, pb.Code_OK},
		{"owner after window", bob, alice, recallWindow * 10, recallWindow, pb.Code_OK},
		{"other member", bob, dave, 0, recallWindow, pb.Code_PERMISSION_DENIED},
		{"owner's own at once", alice, alice, 0, recallWindow, pb.Code_OK},
		{"owner's own after window", alice, alice, recallWindow + 1, recallWindow, pb.Code_OK},
		{"owner's own long after", alice, alice, 1 << 40, recallWindow, pb.Code_OK},
		{"member recalls owner's", alice, bob, 0, recallWindow, pb.Code_PERMISSION_DENIED},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newWorld(t)
			h.must(t, cmd(&pb.DecideCmd{GroupId: g1, OwnerId: alice, UserId: dave, Approve: true}))
			seq := h.say(t, g1, tc.sender, "oops")
			h.take()
			h.now += tc.after

			res := h.apply(t, cmd(&pb.RecallCmd{GroupId: g1, ActorId: tc.actor, Seq: seq,
				Limits: &pb.GroupLimits{RecallWindowMs: tc.window}}))

			wantCode(t, res, tc.want)
			m := h.message(t, g1, seq)
			if tc.want != pb.Code_OK {
				if m.Recalled || m.Text != "oops" {
					t.Fatalf("got %v, want it untouched", m)
				}
				return
			}
			if !m.Recalled || m.RecalledBy != tc.actor || m.Text != "" {
				t.Fatalf("got %v, want recalled by %d with no text", m, tc.actor)
			}
			if !proto.Equal(res.Message, m) {
				t.Fatalf("got result %v, want %v", res.Message, m)
			}
			evs := h.take()
			wantEvents(t, evs, "g1001 u[] recalled")
			r := evs[0].Event.GetRecalled()
			if r.GroupId != g1 || r.Seq != seq || r.ByUserId != tc.actor {
				t.Fatalf("got %v, want seq %d by %d", r, seq, tc.actor)
			}
		})
	}
}

func TestFSM_MarkRead_Cursor(t *testing.T) {
	h := newWorld(t)
	for i := range 5 {
		h.say(t, g1, alice, fmt.Sprint(i))
	} // seqs 3..7; bob has read up to 1, before his JOINED note
	tests := []struct {
		name   string
		seq    uint64
		read   uint64
		unread uint64
		event  bool
	}{
		{"forward", 4, 4, 3, true},
		{"same", 4, 4, 3, false},
		{"back", 2, 4, 3, false},
		{"past the end", 99, 7, 0, true},
		{"at the end", 7, 7, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.take()
			res := h.must(t, cmd(&pb.MarkReadCmd{GroupId: g1, UserId: bob, Seq: tc.seq}))
			if res.ReadSeq != tc.read || res.Unread != tc.unread {
				t.Fatalf("got read %d unread %d, want %d %d",
					res.ReadSeq, res.Unread, tc.read, tc.unread)
			}
			wantUint(t, h.member(t, g1, bob).ReadSeq, tc.read)
			evs := h.take()
			if !tc.event {
				wantEvents(t, evs)
				return
			}
			wantEvents(t, evs, "g1001 u[] read")
			r := evs[0].Event.GetRead()
			if r.UserId != bob || r.ReadSeq != tc.read {
				t.Fatalf("got receipt %v, want bob at %d", r, tc.read)
			}
			s := h.mine(t, bob)[0]
			if s.ReadSeq != tc.read || s.Unread != tc.unread {
				t.Fatalf("got summary %v, want read %d unread %d", s, tc.read, tc.unread)
			}
		})
	}
}

func TestFSM_AckNotices_Deletes(t *testing.T) {
	h := newWorld(t)
	// Bob holds the decision on his application; kick, a second decision
	// and dissolve add three. Dave gets a refusal.
	h.must(t, cmd(&pb.DecideCmd{GroupId: g1, OwnerId: alice, UserId: dave}))
	h.must(t, cmd(&pb.LeaveCmd{GroupId: g1, ActorId: alice, UserId: bob}))
	h.must(t, cmd(&pb.ApplyCmd{GroupId: g2, UserId: bob, PasswordOk: true, PasswordVersion: 1}))
	h.must(t, cmd(&pb.DecideCmd{GroupId: g2, OwnerId: alice, UserId: bob, Approve: true}))
	h.must(t, cmd(&pb.DissolveCmd{GroupId: g2, ActorId: alice}))
	mine := h.notices(t, bob)
	if len(mine) != 4 {
		t.Fatalf("got %d notices, want 4", len(mine))
	}
	for i := 1; i < len(mine); i++ {
		if mine[i].Id <= mine[i-1].Id {
			t.Fatalf("got notice ids %d then %d, want ascending", mine[i-1].Id, mine[i].Id)
		}
	}
	daves := h.notices(t, dave)
	h.take()

	h.must(t, cmd(&pb.AckNoticesCmd{UserId: bob, NoticeIds: []uint64{mine[0].Id, mine[2].Id,
		daves[0].Id, 12345}}))

	got := h.notices(t, bob)
	if len(got) != 2 || got[0].Id != mine[1].Id || got[1].Id != mine[3].Id {
		t.Fatalf("got notices %v, want the 2nd and 4th", got)
	}
	if n := h.notices(t, dave); len(n) != len(daves) {
		t.Fatalf("got %d notices for dave, want %d: others' ids are ignored", len(n), len(daves))
	}
	wantEvents(t, h.take())
}
