package node

import (
	"fmt"
	"testing"

	"github.com/hashicorp/raft"

	pb "github.com/schat/schat/proto"
)

// TestCluster_RecoverFromQuorumLoss loses two of three nodes for good and
// brings the survivor back as a cluster of one, with its data.
func TestCluster_RecoverFromQuorumLoss(t *testing.T) {
	c := newCluster(t, 3)
	ctx := ctxFor(t)
	a, _ := user(t, c.nodes[0].ClientAddr(), false, "ann")
	g := must(a.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "g"}))(t)
	for i := 0; i < 20; i++ {
		must(a.Send(ctx, g.GroupId, fmt.Sprintf("m%d", i), ""))(t)
	}
	c.waitConverged()
	a.Close()
	for i := range c.nodes {
		c.stop(i)
	}

	survivor := c.cfgs[0]
	err := Recover(survivor.DataDir, []raft.Server{{Suffrage: raft.Voter,
		ID: raft.ServerID(survivor.NodeID), Address: raft.ServerAddress(survivor.RaftAddr)}}, nil)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	n := startNode(t, survivor)
	b := dial(t, n.ClientAddr(), false)
	must(b.Login(ctx, "ann", "pw-ann"))(t)
	page := must(b.History(ctx, g.GroupId, 0, 100))(t)
	if last := page.Messages[len(page.Messages)-1]; last.Text != "m19" {
		t.Fatalf("newest message after recovery %q, want m19", last.Text)
	}
	must(b.Send(ctx, g.GroupId, "after recovery", ""))(t)
}
