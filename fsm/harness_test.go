package fsm

import (
	"bytes"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/storage"
)

// testShard is the shard number group-shard harnesses run as; notice IDs
// carry it in their low bits.
const testShard = 3

// startMs is the harness clock's first value.
const startMs = 1_700_000_000_000

// harness drives one FSM the way raft would: it numbers the logs it
// applies and keeps the events the FSM publishes.
type harness struct {
	f      *FSM
	kind   Kind
	path   string
	index  uint64
	now    int64 // stamped on commands that carry no time
	events []Event
}

// newFSM opens a state machine of the given kind on a fresh state file.
func newFSM(t testing.TB, kind Kind) *harness {
	t.Helper()
	h := &harness{kind: kind, path: filepath.Join(t.TempDir(), "state.db"), now: startMs}
	h.open(t)
	t.Cleanup(func() { h.f.Close() })
	return h
}

// open (re)opens the FSM on the harness's state file.
func (h *harness) open(t testing.TB) {
	t.Helper()
	f, err := Open(Config{
		Path:  h.path,
		Kind:  h.kind,
		Shard: testShard,
		Publish: func(evs []Event) {
			h.events = append(h.events, evs...)
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("open fsm: %v", err)
	}
	h.f = f
}

// reopen closes the FSM and opens it again on the same file, as a restart
// would.
func (h *harness) reopen(t testing.TB) {
	t.Helper()
	if err := h.f.Close(); err != nil {
		t.Fatalf("close fsm: %v", err)
	}
	h.open(t)
}

// log wraps cmd in the next raft log entry, stamping the harness time on
// it when it has none.
func (h *harness) log(t testing.TB, cmd *pb.Command) *raft.Log {
	t.Helper()
	if cmd.TimeMs == 0 {
		cmd.TimeMs = h.now
	}
	data, err := proto.Marshal(cmd)
	if err != nil {
		t.Fatalf("marshal command: %v", err)
	}
	h.index++
	return &raft.Log{Index: h.index, Term: 1, Type: raft.LogCommand, Data: data}
}

// apply applies cmd as the next log entry and returns its result.
func (h *harness) apply(t testing.TB, cmd *pb.Command) *Result {
	t.Helper()
	out := h.f.ApplyBatch([]*raft.Log{h.log(t, cmd)})
	res, ok := out[0].(*Result)
	if !ok || res == nil {
		t.Fatalf("apply: got result %#v, want a *Result", out[0])
	}
	return res
}

// must applies cmd and fails the test unless it succeeded.
func (h *harness) must(t testing.TB, cmd *pb.Command) *Result {
	t.Helper()
	res := h.apply(t, cmd)
	if res.Code != pb.Code_OK {
		t.Fatalf("apply %T: got %v %q, want OK", cmd.Op, res.Code, res.Detail)
	}
	return res
}

// take returns the events published since the last take.
func (h *harness) take() []Event {
	evs := h.events
	h.events = nil
	return evs
}

// view runs fn in a read transaction.
func (h *harness) view(t testing.TB, fn func(tx *bolt.Tx) error) {
	t.Helper()
	if err := h.f.View(fn); err != nil {
		t.Fatalf("view: %v", err)
	}
}

// dump lists every key and value of the state, one "bucket key=value"
// line each. The applied index is left out unless withApplied is set, so
// that refused commands can be shown to change nothing else.
func (h *harness) dump(t testing.TB, withApplied bool) []string {
	t.Helper()
	var out []string
	h.view(t, func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				if !withApplied && bytes.Equal(name, storage.Meta) && string(k) == "applied" {
					return nil
				}
				out = append(out, fmt.Sprintf("%s %x=%x", name, k, v))
				return nil
			})
		})
	})
	return out
}

// sameState fails the test when two dumps differ, naming the first
// difference.
func sameState(t testing.TB, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	for i := 0; i < max(len(got), len(want)); i++ {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Fatalf("state differs at line %d: got %q, want %q (%d vs %d lines)",
				i, g, w, len(got), len(want))
		}
	}
}

// describe renders events as "g<group> u<users> <kind>[ notice][ revoke]",
// which is enough to check who gets what.
func describe(evs []Event) []string {
	out := make([]string, 0, len(evs))
	for _, e := range evs {
		s := fmt.Sprintf("g%d u%v %s", e.GroupID, e.Users, eventKind(e.Event))
		if e.Event.GetNoticeId() != 0 {
			s += " notice"
		}
		if e.Revoke {
			s += " revoke"
		}
		out = append(out, s)
	}
	return out
}

func eventKind(ev *pb.Event) string {
	switch b := ev.GetBody().(type) {
	case *pb.Event_Message:
		if n := b.Message.System; n != nil {
			return "note:" + n.Kind.String()
		}
		return "message"
	case *pb.Event_Member:
		return "member:" + b.Member.Change.String()
	case *pb.Event_GroupChanged:
		return "group_changed"
	case *pb.Event_Dissolved:
		return "dissolved"
	case *pb.Event_Application:
		return "application"
	case *pb.Event_Decided:
		return fmt.Sprintf("decided:%t", b.Decided.Approved)
	case *pb.Event_Recalled:
		return "recalled"
	case *pb.Event_Read:
		return "read"
	}
	return "none"
}

// wantEvents fails the test unless evs describe as want.
func wantEvents(t testing.TB, evs []Event, want ...string) {
	t.Helper()
	got := describe(evs)
	if !slices.Equal(got, want) {
		t.Fatalf("events:\n got %q\nwant %q", got, want)
	}
}

// wantCode fails the test unless res carries code.
func wantCode(t testing.TB, res *Result, code pb.Code) {
	t.Helper()
	if res.Code != code {
		t.Fatalf("got code %v (%q), want %v", res.Code, res.Detail, code)
	}
}

// cmd wraps a command body in a Command.
func cmd(body proto.Message) *pb.Command {
	c := &pb.Command{}
	switch b := body.(type) {
	case *pb.RegisterCmd:
		c.Op = &pb.Command_Register{Register: b}
	case *pb.CreateSessionCmd:
		c.Op = &pb.Command_CreateSession{CreateSession: b}
	case *pb.DeleteSessionCmd:
		c.Op = &pb.Command_DeleteSession{DeleteSession: b}
	case *pb.ChangePasswordCmd:
		c.Op = &pb.Command_ChangePassword{ChangePassword: b}
	case *pb.UpdateProfileCmd:
		c.Op = &pb.Command_UpdateProfile{UpdateProfile: b}
	case *pb.ReserveGroupCmd:
		c.Op = &pb.Command_ReserveGroup{ReserveGroup: b}
	case *pb.ReleaseGroupCmd:
		c.Op = &pb.Command_ReleaseGroup{ReleaseGroup: b}
	case *pb.MoveOwnershipCmd:
		c.Op = &pb.Command_MoveOwnership{MoveOwnership: b}
	case *pb.PruneSessionsCmd:
		c.Op = &pb.Command_PruneSessions{PruneSessions: b}
	case *pb.ReconcileOwnedCmd:
		c.Op = &pb.Command_ReconcileOwned{ReconcileOwned: b}
	default:
		groupCmd(c, body)
	}
	return c
}

func groupCmd(c *pb.Command, body proto.Message) {
	switch b := body.(type) {
	case *pb.CreateGroupCmd:
		c.Op = &pb.Command_CreateGroup{CreateGroup: b}
	case *pb.ApplyCmd:
		c.Op = &pb.Command_Apply{Apply: b}
	case *pb.DecideCmd:
		c.Op = &pb.Command_Decide{Decide: b}
	case *pb.LeaveCmd:
		c.Op = &pb.Command_Leave{Leave: b}
	case *pb.DissolveCmd:
		c.Op = &pb.Command_Dissolve{Dissolve: b}
	case *pb.TransferCmd:
		c.Op = &pb.Command_Transfer{Transfer: b}
	case *pb.UpdateGroupCmd:
		c.Op = &pb.Command_UpdateGroup{UpdateGroup: b}
	case *pb.SendCmd:
		c.Op = &pb.Command_Send{Send: b}
	case *pb.RecallCmd:
		c.Op = &pb.Command_Recall{Recall: b}
	case *pb.MarkReadCmd:
		c.Op = &pb.Command_MarkRead{MarkRead: b}
	case *pb.AckNoticesCmd:
		c.Op = &pb.Command_AckNotices{AckNotices: b}
	case *pb.TrimCmd:
		c.Op = &pb.Command_Trim{Trim: b}
	case nil:
	default:
		panic(fmt.Sprintf("cmd: unknown body %T", body))
	}
}

// The group-shard world most tests start from: group g1 (public, no
// password) owned by alice with member bob, and an application from dave;
// carol is nobody's member. g2 is a private group of alice's with join
// password hash pw1.
const (
	alice = 10001
	bob   = 10002
	carol = 10003
	dave  = 10004
	g1    = 1001
	g2    = 1002
)

var pw1 = []byte("hash-1")

// newWorld builds the group-shard world and forgets its events.
func newWorld(t testing.TB) *harness {
	t.Helper()
	h := newFSM(t, KindGroup)
	h.must(t, cmd(&pb.CreateGroupCmd{GroupId: g1, OwnerId: alice, OwnerName: "Alice",
		Name: "one", Description: "first", Public: true}))
	h.must(t, cmd(&pb.CreateGroupCmd{GroupId: g2, OwnerId: alice, OwnerName: "Alice",
		Name: "two", JoinPasswordHash: pw1}))
	h.must(t, cmd(&pb.ApplyCmd{GroupId: g1, UserId: bob, DisplayName: "Bob"}))
	h.must(t, cmd(&pb.DecideCmd{GroupId: g1, OwnerId: alice, UserId: bob, Approve: true,
		UserName: "Bob"}))
	h.must(t, cmd(&pb.ApplyCmd{GroupId: g1, UserId: dave, DisplayName: "Dave", Message: "hi"}))
	h.take()
	return h
}

// say sends a text message from uid to gid and returns its seq.
func (h *harness) say(t testing.TB, gid, uid uint64, text string) uint64 {
	t.Helper()
	return h.must(t, cmd(&pb.SendCmd{GroupId: gid, SenderId: uid, Text: text})).Message.Seq
}

// group reads group gid.
func (h *harness) group(t testing.TB, gid uint64) *pb.Group {
	t.Helper()
	var g *pb.Group
	h.view(t, func(tx *bolt.Tx) (err error) { g, err = GetGroup(tx, gid); return err })
	return g
}

// member reads the membership of uid in gid.
func (h *harness) member(t testing.TB, gid, uid uint64) *pb.Member {
	t.Helper()
	var m *pb.Member
	h.view(t, func(tx *bolt.Tx) (err error) { m, err = GetMember(tx, gid, uid); return err })
	return m
}

// message reads message seq of gid.
func (h *harness) message(t testing.TB, gid, seq uint64) *pb.ChatMessage {
	t.Helper()
	var m *pb.ChatMessage
	h.view(t, func(tx *bolt.Tx) (err error) { m, err = getMessage(tx, gid, seq); return err })
	return m
}

// notices reads the notices of uid.
func (h *harness) notices(t testing.TB, uid uint64) []*pb.Notice {
	t.Helper()
	var ns []*pb.Notice
	h.view(t, func(tx *bolt.Tx) (err error) { ns, err = Notices(tx, uid, 0, 0); return err })
	return ns
}

// refusal is a command that a rule must refuse with code, changing nothing
// and emitting nothing, after setup has run on a fresh world.
type refusal struct {
	name  string
	setup func(t testing.TB, h *harness)
	cmd   *pb.Command
	want  pb.Code
}

// runRefusals runs each refusal on a fresh harness from fresh.
func runRefusals(t *testing.T, fresh func(testing.TB) *harness, cases []refusal) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := fresh(t)
			if tc.setup != nil {
				tc.setup(t, h)
			}
			h.take()
			before := h.dump(t, false)

			res := h.apply(t, tc.cmd)

			wantCode(t, res, tc.want)
			if evs := h.take(); len(evs) != 0 {
				t.Fatalf("got events %q, want none", describe(evs))
			}
			sameState(t, h.dump(t, false), before)
		})
	}
}
