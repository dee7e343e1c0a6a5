package node

import (
	"context"
	"errors"
	"testing"
	"time"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// TestSession_ReadYourWritesAfterFailover sends a message through node A
// while node B is cut off, so that B lacks it, then kills A. The Session
// moves to B, which must not serve it without the message: while B is
// still cut off the resume waits (its login response lists the group's
// newest seq) and a read times out, and once B is reconnected the
// Session resumes there and its first read returns the message. B learns
// of the write only from the resume, which names the write's raft index.
func TestSession_ReadYourWritesAfterFailover(t *testing.T) {
	c := newCluster(t, 3)
	ctx := ctxFor(t)
	a, b := 0, 1
	owner, _ := user(t, c.nodes[2].ClientAddr(), false, "owner")
	go drain(owner)
	g := must(owner.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "g"}))(t)
	joinGroup(t, c, owner, g.GroupId, "ann")
	s, err := transport.NewSession(context.Background(), transport.SessionConfig{
		Addrs:         []string{c.nodes[a].ClientAddr(), c.nodes[b].ClientAddr()},
		ReconnectWait: 20 * time.Millisecond, RequestTimeout: time.Second,
		Logger: sessionLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	go drainSession(s)
	must(s.Login(ctx, "ann", "pw-ann"))(t)
	c.waitConverged()

	// B misses the message; A acknowledges it and dies.
	c.nodes[b].mux.SetIsolated(true)
	m := must(s.Send(ctx, g.GroupId, "acknowledged through A", "m"))(t)
	first := s.Client()
	c.crash(a)
	<-first.Done() // so that the read below waits for the next connection

	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	page, err := s.History(short, g.GroupId, 0, 10)
	cancel()
	if err == nil {
		t.Fatalf("B answered a read without the Session's own write: %v", page.Messages)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read on B while cut off: got %v, want it to wait past its deadline", err)
	}

	c.nodes[b].mux.SetIsolated(false)
	page = must(s.History(ctx, g.GroupId, 0, 10))(t)
	if !pageHas(page, m.Seq) {
		t.Fatalf("first read on B after the heal ends at seq %d, want the Session's seq %d",
			page.LastSeq, m.Seq)
	}
	select {
	case r := <-s.Reconnects():
		if r.Addr != c.cfgs[b].ClientAddr && r.Addr != c.nodes[b].ClientAddr() {
			t.Fatalf("the Session resumed on %s, want B", r.Addr)
		}
	case <-ctx.Done():
		t.Fatal("no reconnect reported")
	}
}
