package node

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
)

// TestNode_Restart closes a node and opens it again on the same directory,
// once with snapshots taken before the close: every record is intact,
// nothing is applied twice, and counters carry on where they stopped.
func TestNode_Restart(t *testing.T) {
	for _, snapshot := range []bool{false, true} {
		t.Run(fmt.Sprintf("snapshot=%v", snapshot), func(t *testing.T) {
			testRestart(t, snapshot)
		})
	}
}

func testRestart(t *testing.T, snapshot bool) {
	cfg := testConfig(t)
	n := startNode(t, cfg)
	ctx := ctxT(t)
	alice, al := user(t, n.ClientAddr(), false, "alice")
	g := must(alice.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "g", Public: true}))(t)
	for i := 0; i < 40; i++ {
		must(alice.Send(ctx, g.GroupId, fmt.Sprintf("m%d", i), fmt.Sprintf("id%d", i)))(t)
	}
	before := must(alice.History(ctx, g.GroupId, 0, 200))(t)
	applied := n.appliedIndexes()
	if snapshot {
		for _, sh := range n.shards {
			if err := sh.raft.Snapshot().Error(); err != nil {
				t.Fatalf("snapshot shard %d: %v", sh.id, err)
			}
		}
	}
	alice.Close()
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	n2 := startNode(t, cfg)
	if got := n2.appliedIndexes(); !sameOrLater(got, applied) {
		t.Fatalf("applied indexes after restart %v, before %v", got, applied)
	}
	alice2 := dial(t, n2.ClientAddr(), false)
	l := must(alice2.Login(ctx, "alice", "pw-alice"))(t)
	if l.User.UserId != al.User.UserId || len(l.Groups) != 1 {
		t.Fatalf("after restart: user %d groups %v, want user %d in 1 group",
			l.User.UserId, l.Groups, al.User.UserId)
	}
	after := must(alice2.History(ctx, g.GroupId, 0, 200))(t)
	if !proto.Equal(before, after) {
		t.Fatalf("history changed across restart:\nbefore %v\nafter  %v", before, after)
	}
	// A retried send from before the restart still lands once.
	m := must(alice2.Send(ctx, g.GroupId, "m0", "id0"))(t)
	if m.Seq != before.Messages[1].Seq {
		t.Fatalf("retry after restart got seq %d, want %d", m.Seq, before.Messages[1].Seq)
	}
	bob := must(alice2.Register(ctx, &pb.RegisterRequest{LoginName: "bob", Password: "pw-bob"}))(t)
	if bob.UserId != al.User.UserId+1 {
		t.Fatalf("next user id %d, want %d", bob.UserId, al.User.UserId+1)
	}
}

// appliedIndexes returns each shard's applied index.
func (n *Node) appliedIndexes() []uint64 {
	out := make([]uint64, len(n.shards))
	for i, sh := range n.shards {
		out[i] = sh.fsm.AppliedIndex()
	}
	return out
}

func sameOrLater(got, want []uint64) bool {
	for i := range want {
		if got[i] < want[i] {
			return false
		}
	}
	return true
}

// TestNode_ShardCountFixed refuses to open a directory with another count.
func TestNode_ShardCountFixed(t *testing.T) {
	cfg := testConfig(t)
	cfg.Shards = 2
	n := startNode(t, cfg)
	n.Close()
	cfg.Shards = 3
	if _, err := New(cfg); err == nil {
		t.Fatalf("New with 3 shards on a 2-shard directory: got nil error")
	}
	cfg.Shards = 0 // unset: the directory's count is used
	n2 := startNode(t, cfg)
	if n2.info.Shards != 2 {
		t.Fatalf("shards = %d, want 2", n2.info.Shards)
	}
}
