package node

import (
	"testing"

	pb "github.com/schat/schat/proto"
)

// TestCluster_Status checks the cluster's status as one node puts it
// together: every member reachable, each shard with the leader the
// cluster has and every member's replica of it, caught up; then, with a
// member down, that member unreachable and the others still reported.
func TestCluster_Status(t *testing.T) {
	c := newClusterWith(t, 3, func(cfg *Config) { cfg.Shards = 2 })
	ctx := ctxFor(t)
	a, _ := user(t, c.nodes[1].ClientAddr(), false, "ann")
	g := must(a.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "g"}))(t)
	must(a.Send(ctx, g.GroupId, "hello", ""))(t)
	c.waitConverged()

	st := c.nodes[0].Status()
	if len(st.Servers) != 3 || len(st.Shards) != 3 {
		t.Fatalf("status has %d servers and %d shards, want 3 and 3", len(st.Servers),
			len(st.Shards))
	}
	for _, s := range st.Servers {
		if !s.Reachable {
			t.Fatalf("server %s unreachable: %s", s.ID, s.Error)
		}
	}
	for i, sh := range st.Shards {
		leader := c.nodes[c.leader(uint32(i))]
		if sh.Leader != leader.cfg.NodeID || sh.CommitIndex != leader.shards[i].raft.CommitIndex() {
			t.Fatalf("shard %s: leader %s at %d, want %s at %d", sh.Shard, sh.Leader,
				sh.CommitIndex, leader.cfg.NodeID, leader.shards[i].raft.CommitIndex())
		}
		if len(sh.Replicas) != 3 {
			t.Fatalf("shard %s has %d replicas, want 3", sh.Shard, len(sh.Replicas))
		}
		for _, r := range sh.Replicas {
			wantContact := r.State == "Leader" && r.LastContactMs == 0 ||
				r.State == "Follower" && r.LastContactMs >= 0
			if r.Lag != 0 || r.AppliedIndex != sh.CommitIndex || !wantContact {
				t.Fatalf("shard %s replica %+v: want caught up (lag 0, applied %d) with a "+
					"last contact", sh.Shard, r, sh.CommitIndex)
			}
		}
	}

	c.crash(2)
	st = c.nodes[0].Status()
	for _, s := range st.Servers {
		if got := s.Reachable; got != (s.ID != "node3") || !got && s.Error == "" {
			t.Fatalf("server %s: reachable %v (%q), want only node3 unreachable, with why",
				s.ID, got, s.Error)
		}
	}
	for _, sh := range st.Shards {
		if len(sh.Replicas) != 2 {
			t.Fatalf("shard %s has %d replicas with node3 down, want 2", sh.Shard,
				len(sh.Replicas))
		}
	}
}
