package node

import (
	"fmt"
	"testing"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// TestNode_LoginBacklog_Paged caps the applications and notices a login
// carries at the default page, says more are waiting, and pages through
// all of them in order with list_applications and list_notices.
func TestNode_LoginBacklog_Paged(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.DefaultPage, cfg.Limits.MaxPage = 3, 4
	n := startNode(t, cfg)
	ctx := ctxT(t)
	owner, _ := user(t, n.ClientAddr(), false, "owner")
	var gids []uint64
	for i := 0; i < 5; i++ {
		g := must(owner.CreateGroup(ctx, &pb.CreateGroupRequest{Name: fmt.Sprint("g", i)}))(t)
		gids = append(gids, g.GroupId)
	}

	// Eight applications: three applicants to the first group, and busy to
	// every group; busy is then answered in each, which leaves five
	// notices.
	for i := 0; i < 3; i++ {
		c, _ := user(t, n.ClientAddr(), false, fmt.Sprint("app", i))
		must(c.ApplyGroup(ctx, gids[0], "", "hi"))(t)
	}
	busy, bl := user(t, n.ClientAddr(), false, "busy")
	for _, gid := range gids {
		must(busy.ApplyGroup(ctx, gid, "", "me too"))(t)
	}
	relog := dial(t, n.ClientAddr(), false)
	l := must(relog.Login(ctx, "owner", "pw-owner"))(t)
	if len(l.Applications) != 3 || !l.MoreApplications {
		t.Fatalf("got %d applications (more %v) at login, want 3 and more",
			len(l.Applications), l.MoreApplications)
	}
	apps := pageApplications(t, relog, 0)
	if len(apps) != 8 {
		t.Fatalf("got %d applications paging, want 8", len(apps))
	}
	for i := 1; i < len(apps); i++ {
		a, b := apps[i-1], apps[i]
		if a.GroupId > b.GroupId || a.GroupId == b.GroupId && a.UserId >= b.UserId {
			t.Fatalf("applications %d and %d out of order: %v, %v", i-1, i, a, b)
		}
	}
	if got := pageApplications(t, relog, gids[0]); len(got) != 4 {
		t.Fatalf("got %d applications to the first group, want 4", len(got))
	}

	for _, gid := range gids {
		if err := owner.Decide(ctx, gid, bl.User.UserId, gid%2 == 0); err != nil {
			t.Fatal(err)
		}
	}
	again := dial(t, n.ClientAddr(), false)
	bl = must(again.Login(ctx, "busy", "pw-busy"))(t)
	if len(bl.Notices) != 3 || !bl.MoreNotices {
		t.Fatalf("got %d notices (more %v) at login, want 3 and more", len(bl.Notices),
			bl.MoreNotices)
	}
	var ids []uint64
	for after := uint64(0); ; {
		p := must(again.Notices(ctx, after, 0))(t)
		for _, nt := range p.Notices {
			if nt.Id <= after {
				t.Fatalf("got notice %d after %d, want ascending", nt.Id, after)
			}
			after = nt.Id
			ids = append(ids, nt.Id)
		}
		if !p.More {
			break
		}
	}
	if len(ids) != 5 || ids[0] != bl.Notices[0].Id {
		t.Fatalf("got notices %v paging, want 5 starting with the login's first", ids)
	}
}

// pageApplications reads every pending application to group gid (0: all
// the caller owns) a page at a time.
func pageApplications(t testing.TB, c *transport.Client, gid uint64) []*pb.Application {
	t.Helper()
	var out []*pb.Application
	req := &pb.ListApplicationsRequest{GroupId: gid}
	for {
		p := must(c.Applications(ctxT(t), req))(t)
		if len(p.Applications) > 3 {
			t.Fatalf("got a page of %d, want at most the default 3", len(p.Applications))
		}
		out = append(out, p.Applications...)
		if !p.More {
			return out
		}
		last := p.Applications[len(p.Applications)-1]
		req = &pb.ListApplicationsRequest{GroupId: gid, AfterGroupId: last.GroupId,
			AfterUserId: last.UserId}
	}
}

// TestNode_History_FromCursor pages back from the caller's read cursor:
// the messages read so far, the cursor's own last.
func TestNode_History_FromCursor(t *testing.T) {
	n := startNode(t, testConfig(t))
	ctx := ctxT(t)
	c, _ := user(t, n.ClientAddr(), false, "reader")
	other, ol := user(t, n.ClientAddr(), false, "other")
	g := must(c.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "g"}))(t)
	must(other.ApplyGroup(ctx, g.GroupId, "", ""))(t)
	if err := c.Decide(ctx, g.GroupId, ol.User.UserId, true); err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for i := 0; i < 4; i++ {
		seqs = append(seqs, must(c.Send(ctx, g.GroupId, fmt.Sprint("m", i), ""))(t).Seq)
	}
	fromCursor := func(cl *transport.Client) *pb.MessagePage {
		t.Helper()
		resp := must(cl.Do(ctx, &pb.ClientFrame{Body: &pb.ClientFrame_History{
			History: &pb.HistoryRequest{GroupId: g.GroupId, FromCursor: true}}}))(t)
		if resp.Code != pb.Code_OK {
			t.Fatalf("history from cursor: %v %s", resp.Code, resp.Detail)
		}
		return resp.GetPage()
	}

	must(other.MarkRead(ctx, g.GroupId, seqs[1]))(t)
	p := fromCursor(other)
	if n := len(p.Messages); n != int(seqs[1]) || p.Messages[n-1].Seq != seqs[1] || p.More {
		t.Fatalf("got %v, want all %d messages up to the cursor", p.Messages, seqs[1])
	}
	if p := fromCursor(c); p.Messages[len(p.Messages)-1].Seq != seqs[3] {
		t.Fatalf("got %v for the sender, who has read all, want up to %d", p.Messages, seqs[3])
	}
}
