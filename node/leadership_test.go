package node

import (
	"testing"

	"github.com/hashicorp/raft"
)

// TestCluster_LeadershipSpread: rebalancing leaves each shard led by its
// preferred voter, so every node sequences its share of the groups, and
// the spread comes back after a node returns.
func TestCluster_LeadershipSpread(t *testing.T) {
	c := newClusterWith(t, 3, func(cfg *Config) { cfg.Shards = 5 })
	spread := func() {
		c.waitFor("each shard led by its preferred node", func() bool {
			for _, n := range c.running() {
				n.rebalance()
			}
			n := c.nodes[0]
			for _, sh := range n.shards {
				want, ok := preferredLeader(sh)
				_, leader := sh.raft.LeaderWithID()
				if !ok || leader != want.ID {
					return false
				}
			}
			return true
		})
	}
	spread()
	led := make(map[raft.ServerID]int)
	for _, sh := range c.nodes[0].shards {
		_, id := sh.raft.LeaderWithID()
		led[id]++
	}
	if len(led) != 3 {
		t.Fatalf("leaders of 6 shards: %v, want all three nodes leading", led)
	}
	c.stop(1)
	c.start(1)
	c.waitVoters(3)
	spread()
}

// TestCluster_HandOver: a node about to shut down hands its leaderships to
// others first.
func TestCluster_HandOver(t *testing.T) {
	c := newCluster(t, 3)
	i := c.leader(metaShard)
	c.nodes[i].handOver()
	for _, sh := range c.nodes[i].shards {
		if sh.raft.State() == raft.Leader {
			t.Fatalf("node %d still leads shard %d after handing over", i+1, sh.id)
		}
	}
	c.stop(i)
	other := (i + 1) % 3
	c.leader(metaShard)
	if c.nodes[other].shards[metaShard].raft.Leader() == "" {
		t.Fatalf("no leader of the meta shard after the hand-over")
	}
}
