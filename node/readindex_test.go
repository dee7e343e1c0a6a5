package node

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// readerOnFollower makes a group on the cluster, and a member of it
// connected to a node that follows the group's shard. It returns the
// owner's client, the group, the shard, the follower's index and the
// member's client.
func readerOnFollower(t *testing.T, c *cluster) (*transport.Client, uint64, uint32, int,
	*transport.Client) {
	t.Helper()
	ctx := ctxFor(t)
	owner, _ := user(t, c.nodes[0].ClientAddr(), false, "owner")
	g := must(owner.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "g"}))(t)
	shard := c.nodes[0].shardOf(g.GroupId)
	follower := (c.leader(shard) + 1) % len(c.nodes)
	reader, rl := user(t, c.nodes[follower].ClientAddr(), false, "reader")
	must(reader.ApplyGroup(ctx, g.GroupId, "", ""))(t)
	if err := owner.Decide(ctx, g.GroupId, rl.User.UserId, true); err != nil {
		t.Fatal(err)
	}
	go drain(owner)
	go drain(reader)
	return owner, g.GroupId, shard, follower, reader
}

func pageHas(p *pb.MessagePage, seq uint64) bool {
	for _, m := range p.GetMessages() {
		if m.Seq == seq {
			return true
		}
	}
	return false
}

// TestCluster_LinearizableSync reads with a linearizable sync through a
// follower that was cut off while another client's message was
// acknowledged: a plain sync there misses the message (the follower never
// received it), the linearizable one fails rather than answer without
// it, and once the follower is reconnected and knows the leader again,
// the linearizable sync returns it at once.
func TestCluster_LinearizableSync(t *testing.T) {
	c := newCluster(t, 3)
	ctx := ctxFor(t)
	owner, gid, shard, follower, reader := readerOnFollower(t, c)
	c.waitConverged() // the follower knows the reader is a member

	c.nodes[follower].mux.SetIsolated(true)
	m := must(owner.Send(ctx, gid, "while the reader's node was cut off", "m"))(t)
	plain := must(reader.Sync(ctx, gid, 0, 0, false))(t)
	if pageHas(plain, m.Seq) {
		t.Fatalf("a plain sync on the cut-off node has seq %d; the test needs it stale", m.Seq)
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	page, err := reader.Sync(sctx, gid, 0, 0, false, transport.Linearizable())
	cancel()
	if err == nil {
		t.Fatalf("a linearizable sync on the cut-off node answered %v, want an error", page)
	}

	c.nodes[follower].mux.SetIsolated(false)
	leaderID := raft.ServerID(c.nodes[c.leader(shard)].cfg.NodeID)
	c.waitFor("the follower to know the leader", func() bool {
		_, id := c.nodes[follower].shards[shard].raft.LeaderWithID()
		return id == leaderID
	})
	page = must(reader.Sync(ctx, gid, 0, 0, false, transport.Linearizable()))(t)
	if !pageHas(page, m.Seq) {
		t.Fatalf("a linearizable sync after the heal ends at seq %d, want seq %d in it",
			page.LastSeq, m.Seq)
	}
}

// TestCluster_ReadIndexWritesNothing checks that linearizable reads, on
// the shard's leader and on a follower, add nothing to the raft log once
// the leader has committed the first entry of its term: they are served by
// read index, not by a barrier entry each.
func TestCluster_ReadIndexWritesNothing(t *testing.T) {
	c := newCluster(t, 3)
	for _, n := range c.nodes {
		n.rebalance() // so that no hand-over starts a new term meanwhile
	}
	ctx := ctxFor(t)
	owner, gid, shard, _, reader := readerOnFollower(t, c)
	m := must(owner.Send(ctx, gid, "hello", "m"))(t)
	li := c.leader(shard)
	onLeader := dial(t, c.nodes[li].ClientAddr(), false)
	must(onLeader.Login(ctx, "owner", "pw-owner"))(t)
	leader := c.nodes[li].shards[shard].raft
	must(onLeader.History(ctx, gid, 0, 1, transport.Linearizable()))(t) // the term's barrier

	before := leader.LastIndex()
	for i := 0; i < 10; i++ {
		for _, cl := range []*transport.Client{onLeader, reader} {
			h := must(cl.History(ctx, gid, 0, 1, transport.Linearizable()))(t)
			s := must(cl.Sync(ctx, gid, m.Seq-1, 1, false, transport.Linearizable()))(t)
			if h.LastSeq != m.Seq || !pageHas(s, m.Seq) {
				t.Fatalf("linearizable reads: history ends at %d, sync %v; want seq %d",
					h.LastSeq, s.Messages, m.Seq)
			}
		}
	}
	if after := leader.LastIndex(); after != before {
		t.Fatalf("40 linearizable reads moved the leader's last index from %d to %d, want no entry",
			before, after)
	}
}
