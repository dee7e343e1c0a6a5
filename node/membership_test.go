package node

import (
	"fmt"
	"testing"

	pb "github.com/schat/schat/proto"
)

// TestCluster_Membership: a node joins a cluster that already has data
// and catches up; a node is removed; a node restarts on its data without
// joining again.
func TestCluster_Membership(t *testing.T) {
	c := newCluster(t, 3)
	ctx := ctxFor(t)
	a, _ := user(t, c.nodes[0].ClientAddr(), false, "ann")
	g := must(a.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "g"}))(t)
	for i := 0; i < 50; i++ {
		must(a.Send(ctx, g.GroupId, fmt.Sprintf("m%d", i), ""))(t)
	}

	// A fourth node joins and receives everything written before it came.
	cfg := testConfig(t)
	cfg.NodeID = "node4"
	cfg.Join = []string{c.nodes[1].RaftAddr()}
	cfg.ClusterSecret = string(c.nodes[0].secret)
	c.cfgs = append(c.cfgs, cfg)
	c.nodes = append(c.nodes, nil)
	c.start(3)
	c.waitVoters(4)
	c.waitConverged()

	// It is removed again; the other three carry on.
	if err := c.nodes[2].RemoveServer(ctx, "node4"); err != nil {
		t.Fatalf("RemoveServer: %v", err)
	}
	c.stop(3)
	c.waitVoters(3)
	if isVoter(c.nodes[0].shards[metaShard], "node4") {
		t.Fatalf("node4 is still a voter after removal")
	}

	// A node restarts on its data; its --join is ignored.
	c.stop(1)
	must(a.Send(ctx, g.GroupId, "while node2 was down", ""))(t)
	c.start(1)
	c.waitVoters(3)
	c.waitConverged()
	if got := c.nodes[1].info.Joined; !got {
		t.Fatalf("restarted node2 lost its joined mark")
	}
}
