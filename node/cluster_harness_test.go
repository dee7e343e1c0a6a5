package node

import (
	"context"
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// The cluster fault tests (failover, partition, linearizability) break
// the cluster once, under a short load, by default. For a long run raise
// the rounds and the time each round keeps the load going, for example:
//
//	go test ./node -run 'TestCluster_(Failover|Partition|Linearizable)$' \
//		-cluster.rounds=20 -cluster.duration=20s -timeout 2h
var (
	clusterRounds = flag.Int("cluster.rounds", 1,
		"times each cluster fault test breaks the cluster and lets it heal")
	clusterDuration = flag.Duration("cluster.duration", 0,
		"least time each round of a cluster fault test keeps its load going")
)

// holdLoad lets a round's load run until at least -cluster.duration has
// passed since the round began: the length of a long run, not a wait
// for a condition.
func holdLoad(began time.Time) {
	time.Sleep(time.Until(began.Add(*clusterDuration)))
}

// cluster is an in-process cluster of real nodes on loopback: real raft,
// real node ports, real client listeners.
type cluster struct {
	t     testing.TB
	nodes []*Node // nil while a node is stopped
	cfgs  []Config
}

// newCluster starts node 1 as a new cluster and joins the others to it,
// and waits until every shard has all of them as voters.
func newCluster(t testing.TB, size int) *cluster {
	return newClusterWith(t, size, nil)
}

// newClusterWith is newCluster with each node's configuration adjusted by
// tweak.
func newClusterWith(t testing.TB, size int, tweak func(*Config)) *cluster {
	t.Helper()
	c := &cluster{t: t, nodes: make([]*Node, size), cfgs: make([]Config, size)}
	for i := range c.cfgs {
		cfg := testConfig(t)
		cfg.NodeID = fmt.Sprintf("node%d", i+1)
		if tweak != nil {
			tweak(&cfg)
		}
		c.cfgs[i] = cfg
	}
	c.start(0)
	secret := string(c.nodes[0].secret)
	for i := 1; i < size; i++ {
		c.cfgs[i].Join = []string{c.nodes[0].RaftAddr()}
		c.cfgs[i].ClusterSecret = secret
		c.start(i)
	}
	c.waitVoters(size)
	return c
}

// start (re)starts node i on its data directory. A restarted node keeps
// its node port address, which the other nodes know it by.
func (c *cluster) start(i int) *Node {
	c.t.Helper()
	n, err := New(c.cfgs[i])
	if err != nil {
		c.t.Fatalf("start node %d: %v", i+1, err)
	}
	c.cfgs[i].RaftAddr = n.RaftAddr()
	c.nodes[i] = n
	c.t.Cleanup(func() { n.Close() })
	return n
}

// stop closes node i cleanly.
func (c *cluster) stop(i int) {
	c.t.Helper()
	if err := c.nodes[i].Close(); err != nil {
		c.t.Logf("close node %d: %v", i+1, err)
	}
	c.nodes[i] = nil
}

// waitFor polls cond until it holds or 20 seconds pass.
func (c *cluster) waitFor(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitVoters waits until every running node sees size voters and a
// leader in every shard.
func (c *cluster) waitVoters(size int) {
	c.t.Helper()
	c.waitFor(fmt.Sprintf("%d voters in every shard", size), func() bool {
		for _, n := range c.running() {
			for _, sh := range n.shards {
				if addr, _ := sh.raft.LeaderWithID(); addr == "" {
					return false
				}
				f := sh.raft.GetConfiguration()
				if f.Error() != nil || len(f.Configuration().Servers) != size {
					return false
				}
			}
		}
		return true
	})
}

func (c *cluster) running() []*Node {
	var out []*Node
	for _, n := range c.nodes {
		if n != nil {
			out = append(out, n)
		}
	}
	return out
}

// leader returns the index of the node leading shard, waiting for one.
func (c *cluster) leader(shard uint32) int {
	c.t.Helper()
	idx := -1
	c.waitFor(fmt.Sprintf("a leader of shard %d", shard), func() bool {
		for i, n := range c.nodes {
			if n != nil && n.shards[shard].raft.State() == raft.Leader {
				idx = i
				return true
			}
		}
		return false
	})
	return idx
}

// waitConverged waits until every running node holds the same log and
// an identical state in every shard.
func (c *cluster) waitConverged() {
	c.t.Helper()
	nodes := c.running()
	c.waitFor("replicas to converge", func() bool {
		for s := range nodes[0].shards {
			want := nodes[0].shards[s].raft.LastIndex()
			dump := stateDump(c.t, nodes[0], s)
			for _, n := range nodes {
				r := n.shards[s].raft
				if r.LastIndex() != want || r.AppliedIndex() != want ||
					stateDump(c.t, n, s) != dump {
					return false
				}
			}
		}
		return true
	})
}

// ctxFor is a context for one step of a cluster test.
func ctxFor(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
