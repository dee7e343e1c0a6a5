package node

import (
	"testing"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// TestNode_V1Demo replays schat v1's demo, and every group operation after
// it, through the Go client over TCP, WebSocket binary and WebSocket JSON.
func TestNode_V1Demo(t *testing.T) {
	n := startNode(t, testConfig(t))
	for _, tc := range []struct {
		name string
		addr string
		json bool
	}{
		{"tcp", n.ClientAddr(), false},
		{"websocket", "ws://" + n.HTTPAddr() + "/ws", false},
		{"websocket-json", "ws://" + n.HTTPAddr() + "/ws", true},
	} {
		t.Run(tc.name, func(t *testing.T) { runDemo(t, tc.addr, tc.json, tc.name) })
	}
}

func isMsg(text string) func(*pb.Event) bool {
	return func(e *pb.Event) bool { return e.GetMessage().GetText() == text }
}

func runDemo(t *testing.T, addr string, json bool, suffix string) {
	ctx := ctxT(t)
	protoss, _ := user(t, addr, json, "protoss-"+suffix)
	zerg, zl := user(t, addr, json, "zerg-"+suffix)
	zergID := zl.User.UserId

	// create, then apply with a wrong and then the right password
	g := must(protoss.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "sc2", JoinPassword: "123"}))(t)
	gid := g.GroupId
	_, err := zerg.ApplyGroup(ctx, gid, "wrong", "let me in")
	wantCode(t, err, pb.Code_WRONG_PASSWORD)
	must(zerg.ApplyGroup(ctx, gid, "123", "let me in"))(t)
	app := waitEvent(t, protoss, "application",
		func(e *pb.Event) bool { return e.GetApplication() != nil })
	if got := app.GetApplication(); got.UserId != zergID || got.Message != "let me in" {
		t.Fatalf("application event = %v, want zerg's with his message", got)
	}

	// approve: zerg learns at once
	if err := protoss.Decide(ctx, gid, zergID, true); err != nil {
		t.Fatalf("Decide: %v", err)
	}
	dec := waitEvent(t, zerg, "decision", func(e *pb.Event) bool { return e.GetDecided() != nil })
	if !dec.GetDecided().Approved || dec.NoticeId == 0 {
		t.Fatalf("decision event = %v, want approved with a notice id", dec)
	}
	if err := zerg.AckNotices(ctx, dec.NoticeId); err != nil {
		t.Fatalf("AckNotices: %v", err)
	}

	// chat both ways
	m1 := must(zerg.Send(ctx, gid, "hello", "z-1"))(t)
	waitEvent(t, protoss, "hello", isMsg("hello"))
	must(protoss.Send(ctx, gid, "hi zerg", "p-1"))(t)
	waitEvent(t, zerg, "reply", isMsg("hi zerg"))
	again := must(zerg.Send(ctx, gid, "hello", "z-1"))(t)
	if again.Seq != m1.Seq {
		t.Fatalf("retried send got seq %d, want %d (lands once)", again.Seq, m1.Seq)
	}

	// offline sync: protoss logs out, zerg sends three, protoss comes back
	if err := protoss.Logout(ctx); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	_, err = protoss.MyGroups(ctx)
	wantCode(t, err, pb.Code_UNAUTHENTICATED)
	for _, text := range []string{"no.1message", "no.2message", "no.3message"} {
		must(zerg.Send(ctx, gid, text, ""))(t)
	}
	pl2 := must(protoss.Login(ctx, "protoss-"+suffix, "pw-protoss-"+suffix))(t)
	if len(pl2.Groups) != 1 || pl2.Groups[0].Unread != 3 {
		t.Fatalf("login groups = %v, want sc2 with 3 unread", pl2.Groups)
	}
	page := must(protoss.Sync(ctx, gid, 0, 0, true))(t)
	if len(page.Messages) != 3 || page.Messages[0].Text != "no.1message" {
		t.Fatalf("sync page = %v, want the 3 offline messages in order", page.Messages)
	}
	checkGapFree(t, must(protoss.History(ctx, gid, 0, 0))(t).Messages)
	mr := must(protoss.MarkRead(ctx, gid, page.Messages[2].Seq))(t)
	if mr.Unread != 0 {
		t.Fatalf("unread after marking = %d, want 0", mr.Unread)
	}

	// recall: zerg's own message; protoss sees it go
	rec := must(zerg.Recall(ctx, gid, m1.Seq))(t)
	if !rec.Recalled || rec.Text != "" {
		t.Fatalf("recalled message = %v, want recalled with no text", rec)
	}
	waitEvent(t, protoss, "recall",
		func(e *pb.Event) bool { return e.GetRecalled().GetSeq() == m1.Seq })

	runMembership(t, protoss, zerg, gid, zergID)
}

// runMembership covers kick, quit, transfer and dissolve.
func runMembership(t *testing.T, protoss, zerg *transport.Client, gid, zergID uint64) {
	ctx := ctxT(t)
	if err := protoss.Kick(ctx, gid, zergID); err != nil {
		t.Fatalf("Kick: %v", err)
	}
	waitEvent(t, zerg, "kick", func(e *pb.Event) bool {
		return e.GetMember().GetChange() == pb.MemberChanged_KICKED
	})
	_, err := zerg.Send(ctx, gid, "still here?", "")
	wantCode(t, err, pb.Code_NOT_MEMBER)

	rejoin := func() {
		must(zerg.ApplyGroup(ctx, gid, "123", "again"))(t)
		if err := protoss.Decide(ctx, gid, zergID, true); err != nil {
			t.Fatalf("Decide: %v", err)
		}
	}
	rejoin()
	wantCode(t, protoss.Quit(ctx, gid), pb.Code_OWNER_MUST_TRANSFER)
	if err := zerg.Quit(ctx, gid); err != nil {
		t.Fatalf("Quit: %v", err)
	}
	rejoin()
	if err := protoss.Transfer(ctx, gid, zergID); err != nil {
		t.Fatalf("Transfer: %v", err)
	}
	info := must(zerg.GroupInfo(ctx, gid))(t)
	if info.OwnerId != zergID || len(info.Members) != 2 {
		t.Fatalf("group after transfer = %v, want zerg owning 2 members", info)
	}
	wantCode(t, protoss.Dissolve(ctx, gid), pb.Code_PERMISSION_DENIED)
	if err := zerg.Dissolve(ctx, gid); err != nil {
		t.Fatalf("Dissolve: %v", err)
	}
	waitEvent(t, protoss, "dissolve",
		func(e *pb.Event) bool { return e.GetDissolved().GetGroupId() == gid })
	_, err = protoss.History(ctx, gid, 0, 0)
	wantCode(t, err, pb.Code_NOT_MEMBER)
	if gs := must(protoss.MyGroups(ctx))(t); len(gs) != 0 {
		t.Fatalf("protoss's groups after dissolve = %v, want none", gs)
	}
}

// checkGapFree fails unless msgs have consecutive sequence numbers.
func checkGapFree(t testing.TB, msgs []*pb.ChatMessage) {
	t.Helper()
	for i := 1; i < len(msgs); i++ {
		if msgs[i].Seq != msgs[i-1].Seq+1 {
			t.Fatalf("seq %d follows %d: gap or disorder", msgs[i].Seq, msgs[i-1].Seq)
		}
	}
}
