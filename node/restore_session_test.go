package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// TestSession_NoticesRestore keeps a Session connected while its server
// is replaced by a restore of an older backup. The Session sees the new
// incarnation, reports Rewound, and delivers the messages sent after the
// restore although their seqs were delivered before it.
func TestSession_NoticesRestore(t *testing.T) {
	sc := newRestoreScene(t)
	reader := sc.session(t, "owner")
	sendTexts(t, sc.owner, sc.gid, "before backup", 3)
	file, _ := httpBackup(t, sc.src)
	sendTexts(t, sc.owner, sc.gid, "lost by the restore", 4)
	var lostTo uint64
	for range 7 {
		lostTo = nextMessage(t, reader).Seq
	}
	sc.src.Close()

	rcfg := restoredConfig(t, file)
	rcfg.ClientAddr = sc.next
	n := startNode(t, rcfg)
	r := awaitReconnect(t, reader)
	if !r.Rewound || r.Login.Incarnation == 0 {
		t.Fatalf("reconnect %+v: want Rewound and a new incarnation", r)
	}
	owner2 := dial(t, n.ClientAddr(), false)
	must(owner2.Login(ctxFor(t), "owner", "pw-owner"))(t)
	go drain(owner2)
	sendTexts(t, owner2, sc.gid, "after restore", 1)
	m := nextMessage(t, reader)
	if m.Text != "after restore 0" || m.Seq > lostTo {
		t.Fatalf("got message %d %q after the restore, want \"after restore 0\" at a reused seq",
			m.Seq, m.Text)
	}
}

// TestSession_RestoreReusedSeqsBeforeReconnect: a Session delivered seqs
// 1-10, the backup ends at 7, and seqs 8-10 are sent again on the
// restored deployment before the Session reconnects. The group's LastSeq
// is 10 again when it does, but the three new messages are still
// delivered: the mark comes down to the seq the group had at the restore.
func TestSession_RestoreReusedSeqsBeforeReconnect(t *testing.T) {
	sc := newRestoreScene(t)
	reader := sc.session(t, "owner")
	sendTexts(t, sc.owner, sc.gid, "kept", 7)
	file, _ := httpBackup(t, sc.src)
	sendTexts(t, sc.owner, sc.gid, "lost", 3)
	base := wantMessages(t, reader, 0, "kept 0", "kept 1", "kept 2", "kept 3", "kept 4",
		"kept 5", "kept 6", "lost 0", "lost 1", "lost 2")
	sc.src.Close()

	// The restored deployment takes three sends while the Session cannot
	// reach it, then comes up where the Session looks.
	rcfg := restoredConfig(t, file)
	n := startNode(t, rcfg)
	sendAs(t, n.ClientAddr(), "owner", sc.gid, "new", 3)
	n.Close()
	rcfg.ClientAddr = sc.next
	startNode(t, rcfg)

	r := awaitReconnect(t, reader)
	if !r.Rewound || r.CaughtUp != 3 {
		t.Fatalf("reconnect: Rewound %v, caught up %d; want Rewound and 3", r.Rewound, r.CaughtUp)
	}
	if got := groupSummary(t, r.Login, sc.gid); got.LastSeq != base+9 ||
		got.RestoredSeq != base+6 {
		t.Fatalf("group summary %v: want LastSeq %d and RestoredSeq %d", got, base+9, base+6)
	}
	wantMessages(t, reader, base+7, "new 0", "new 1", "new 2")
}

// TestSession_RestoreOfARestore: a Session that knew the original history
// reconnects to a deployment restored from a backup of another restored
// deployment, whose own new messages reused seqs the Session delivered.
// Nothing it delivered is known to be shared, so it catches up from its
// read cursor and gets the intermediate history's messages too.
func TestSession_RestoreOfARestore(t *testing.T) {
	sc := newRestoreScene(t)
	member, ml := user(t, sc.src.ClientAddr(), false, "member")
	must(member.ApplyGroup(ctxFor(t), sc.gid, "", ""))(t)
	if err := sc.owner.Decide(ctxFor(t), sc.gid, ml.User.UserId, true); err != nil {
		t.Fatal(err)
	}
	reader := sc.session(t, "member")
	sendTexts(t, sc.owner, sc.gid, "original", 7)
	base := wantMessages(t, reader, 0, "original 0", "original 1", "original 2",
		"original 3", "original 4", "original 5", "original 6")
	must(member.MarkRead(ctxFor(t), sc.gid, base+1))(t)
	first, _ := httpBackup(t, sc.src)
	sendTexts(t, sc.owner, sc.gid, "lost", 3)
	wantMessages(t, reader, base+7, "lost 0", "lost 1", "lost 2")
	sc.src.Close()

	// The first restore writes seqs 8-10 anew and is backed up itself.
	mid := startNode(t, restoredConfig(t, first))
	sendAs(t, mid.ClientAddr(), "owner", sc.gid, "between", 3)
	second, _ := httpBackup(t, mid)
	mid.Close()

	fcfg := restoredConfig(t, second)
	fcfg.ClientAddr = sc.next
	startNode(t, fcfg)
	r := awaitReconnect(t, reader)
	if !r.Rewound || r.CaughtUp != 8 {
		t.Fatalf("reconnect: Rewound %v, caught up %d; want Rewound and 8 (after the cursor)",
			r.Rewound, r.CaughtUp)
	}
	wantMessages(t, reader, base+2, "original 2", "original 3", "original 4", "original 5",
		"original 6", "between 0", "between 1", "between 2")
}

// restoreScene is a node with a group of owner's, and the client address
// that a node restored from its backup will listen on.
type restoreScene struct {
	src   *Node
	owner *transport.Client
	gid   uint64
	next  string
}

func newRestoreScene(t testing.TB) restoreScene {
	t.Helper()
	src := startNode(t, testConfig(t))
	owner, _ := user(t, src.ClientAddr(), false, "owner")
	go drain(owner)
	g := must(owner.CreateGroup(ctxFor(t), &pb.CreateGroupRequest{Name: "g"}))(t)
	return restoreScene{src: src, owner: owner, gid: g.GroupId, next: freeAddr(t)}
}

// session logs name in on a Session over the source node and the next
// address.
func (sc restoreScene) session(t testing.TB, name string) *transport.Session {
	t.Helper()
	return loginSession(t, name, sc.src.ClientAddr(), sc.next)
}

// restoredConfig restores file into a fresh data directory and returns
// the configuration of a node on it, on ports the kernel chooses except
// the node port, which the restore fixed.
func restoredConfig(t testing.TB, file string) Config {
	t.Helper()
	cfg := testConfig(t)
	cfg.RaftAddr, cfg.Shards = freeAddr(t), 0
	if _, err := Restore(RestoreConfig{From: file, DataDir: cfg.DataDir,
		RaftAddr: cfg.RaftAddr}); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// sendAs logs name in on a new connection to addr and sends n texts.
func sendAs(t testing.TB, addr, name string, gid uint64, text string, n int) {
	t.Helper()
	c := dial(t, addr, false)
	must(c.Login(ctxFor(t), name, "pw-"+name))(t)
	go drain(c)
	sendTexts(t, c, gid, text, n)
	c.Close()
}

// wantMessages reads the next len(texts) messages of s and fails unless
// they are texts at consecutive seqs from from (0: from whichever comes
// first). It returns the seq of the first.
func wantMessages(t testing.TB, s *transport.Session, from uint64, texts ...string) uint64 {
	t.Helper()
	for i, want := range texts {
		m := nextMessage(t, s)
		if from == 0 {
			from = m.Seq
		}
		if m.Seq != from+uint64(i) || m.Text != want {
			t.Fatalf("got message %d %q, want %d %q", m.Seq, m.Text, from+uint64(i), want)
		}
	}
	return from
}

func groupSummary(t testing.TB, l *pb.LoginResponse, gid uint64) *pb.GroupSummary {
	t.Helper()
	for _, g := range l.Groups {
		if g.GroupId == gid {
			return g
		}
	}
	t.Fatalf("group %d is not in the login", gid)
	return nil
}

// loginSession logs name in on a Session over addrs; its token is the one
// it resumes with after a restore, so it logs in before the backup.
func loginSession(t testing.TB, name string, addrs ...string) *transport.Session {
	t.Helper()
	s, err := transport.NewSession(context.Background(), transport.SessionConfig{
		Addrs: addrs, ReconnectWait: 20 * time.Millisecond, Logger: sessionLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	must(s.Login(ctxFor(t), name, "pw-"+name))(t)
	return s
}

func sendTexts(t testing.TB, c *transport.Client, gid uint64, text string, n int) {
	t.Helper()
	for i := range n {
		must(c.Send(ctxFor(t), gid, fmt.Sprintf("%s %d", text, i), ""))(t)
	}
}

// nextMessage returns the next message event of s.
func nextMessage(t testing.TB, s *transport.Session) *pb.ChatMessage {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e, ok := <-s.Events():
			if !ok {
				t.Fatalf("session ended: %v", s.Err())
			}
			if m := e.GetMessage(); m != nil {
				return m
			}
		case <-deadline:
			t.Fatal("no message within 10s")
		}
	}
}

func awaitReconnect(t testing.TB, s *transport.Session) transport.Reconnect {
	t.Helper()
	select {
	case r := <-s.Reconnects():
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("no reconnect within 20s")
	}
	return transport.Reconnect{}
}
