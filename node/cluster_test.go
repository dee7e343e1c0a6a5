package node

import (
	"fmt"
	"testing"

	pb "github.com/schat/schat/proto"
)

// TestCluster_ServeOnEveryNode: clients on different nodes of a
// three-node cluster chat with each other; writes received by followers
// are forwarded to the leaders; every node ends with the same state.
func TestCluster_ServeOnEveryNode(t *testing.T) {
	c := newCluster(t, 3)
	ctx := ctxFor(t)
	a, al := user(t, c.nodes[0].ClientAddr(), false, "ann")
	b, _ := user(t, c.nodes[1].ClientAddr(), false, "ben")
	cc, cl := user(t, c.nodes[2].ClientAddr(), false, "cid")
	g := must(b.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "g", Public: true}))(t)
	must(a.ApplyGroup(ctx, g.GroupId, "", "hi"))(t)
	must(cc.ApplyGroup(ctx, g.GroupId, "", "hi"))(t)
	for _, id := range []uint64{al.User.UserId, cl.User.UserId} {
		if err := b.Decide(ctx, g.GroupId, id, true); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 20; i++ {
		m := must(cc.Send(ctx, g.GroupId, fmt.Sprintf("from cid %d", i), ""))(t)
		// read-your-writes on the node the client is connected to
		page := must(cc.History(ctx, g.GroupId, 0, 1))(t)
		if page.LastSeq < m.Seq {
			t.Fatalf("history on cid's node ends at %d, after acknowledging %d",
				page.LastSeq, m.Seq)
		}
	}
	waitEvent(t, a, "cid's last message", isMsg("from cid 19"))
	waitEvent(t, b, "cid's last message", isMsg("from cid 19"))
	hist := must(a.History(ctx, g.GroupId, 0, 100))(t)
	checkGapFree(t, hist.Messages)
	c.waitConverged()
}
