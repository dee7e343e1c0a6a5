package node

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/hashicorp/raft"

	pb "github.com/schat/schat/proto"
)

// errCrashPoint is what a test's failPoint returns to stop New where a
// crash would.
var errCrashPoint = errors.New("test: crash point")

// crashAt is a failPoint that stops New at point, after running before.
func crashAt(point string, before func()) func(string) error {
	return func(p string) error {
		if p != point {
			return nil
		}
		if before != nil {
			before()
		}
		return errCrashPoint
	}
}

// startFailing starts node i with fail as its failPoint and checks that
// New stops at it. The failPoint is cleared for later starts.
func (c *cluster) startFailing(i int, fail func(string) error) {
	c.t.Helper()
	cfg := c.cfgs[i]
	cfg.failPoint = fail
	n, err := New(cfg)
	if err == nil {
		n.Close()
		c.t.Fatalf("node %d started; want it stopped at its crash point", i+1)
	}
	if !errors.Is(err, errCrashPoint) {
		c.t.Fatalf("node %d: got %v, want the crash point", i+1, err)
	}
}

// checkConfiguration fails unless every shard of node i has exactly the
// voters ids.
func (c *cluster) checkConfiguration(i int, ids ...string) {
	c.t.Helper()
	for _, sh := range c.nodes[i].shards {
		f := sh.raft.GetConfiguration()
		if err := f.Error(); err != nil {
			c.t.Fatalf("node %d shard %d: %v", i+1, sh.id, err)
		}
		var got []string
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				got = append(got, string(s.ID))
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, ids) {
			c.t.Fatalf("node %d shard %d has voters %v, want %v", i+1, sh.id, got, ids)
		}
	}
}

// TestCluster_JoinCutShort stops a joining node after it was added to the
// meta shard but before it asked for the group shards, as a crash or a
// join that timed out would, and starts it again on its data without
// Join: it finishes the join from what its directory recorded, becomes a
// voter of every shard and serves.
func TestCluster_JoinCutShort(t *testing.T) {
	c := newClusterWith(t, 2, func(cfg *Config) { cfg.Shards = 2 })
	cfg := testConfig(t)
	cfg.NodeID = "node3"
	cfg.RaftAddr = freeAddr(t)
	cfg.Shards = 0 // the cluster's
	cfg.Join = []string{c.nodes[0].RaftAddr()}
	cfg.ClusterSecret = string(c.nodes[0].secret)
	c.cfgs, c.nodes = append(c.cfgs, cfg), append(c.nodes, nil)

	c.startFailing(2, crashAt("join shard 1", nil))
	info, _, err := readDataDir(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Joined || !slices.Equal(info.JoinPending, []uint32{1, 2}) {
		t.Fatalf("directory after the cut: joined %v, pending %v; want joined, pending [1 2]",
			info.Joined, info.JoinPending)
	}

	c.cfgs[2].Join, c.cfgs[2].ClusterSecret = nil, ""
	c.start(2)
	c.waitVoters(3)
	c.checkConfiguration(2, "node1", "node2", "node3")
	if info, _, _ := readDataDir(cfg.DataDir); len(info.JoinPending) != 0 || !info.Joined {
		t.Fatalf("directory after the join: joined %v, pending %v; want joined, none pending",
			info.Joined, info.JoinPending)
	}
	ctx := ctxFor(t)
	a, _ := user(t, c.nodes[2].ClientAddr(), false, "ann")
	g := must(a.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "g"}))(t)
	must(a.Send(ctx, g.GroupId, "through the node that joined", ""))(t)
	c.waitConverged()
}

// startExpecting starts the nodes of c at once, each with
// BootstrapExpect and joining the others, and stops node i at point once
// the others have started. No node opens a shard before every one has
// decided how to form the cluster, so that all of them bootstrap it
// rather than join whichever was first. It returns when every New has;
// the nodes that started are in c.nodes.
func (c *cluster) startExpecting(i int, point string) {
	c.t.Helper()
	var wg, decided, others sync.WaitGroup
	decided.Add(len(c.cfgs))
	errs := make([]error, len(c.cfgs))
	for k := range c.cfgs {
		cfg := c.cfgs[k]
		crash := func(string) error { return nil }
		if k == i {
			crash = crashAt(point, others.Wait)
		} else {
			others.Add(1)
		}
		cfg.failPoint = func(p string) error {
			if p == "open shard 0" {
				decided.Done()
				decided.Wait()
			}
			return crash(p)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if k != i {
				defer others.Done()
			}
			n, err := New(cfg)
			if err != nil {
				errs[k] = err
				return
			}
			c.t.Cleanup(func() { n.Close() })
			c.nodes[k] = n
		}()
	}
	wg.Wait()
	for k, err := range errs {
		if k == i && !errors.Is(err, errCrashPoint) {
			c.t.Fatalf("node %d: got %v, want the crash point", k+1, err)
		}
		if k != i && err != nil {
			c.t.Fatalf("node %d: %v", k+1, err)
		}
	}
}

// expectCluster prepares, without starting them, size nodes that form a
// cluster with BootstrapExpect on fixed node ports.
func expectCluster(t *testing.T, size int, tweak func(*Config)) *cluster {
	c := &cluster{t: t, nodes: make([]*Node, size), cfgs: make([]Config, size)}
	addrs := make([]string, size)
	for i := range addrs {
		addrs[i] = freeAddr(t)
	}
	for i := range c.cfgs {
		cfg := testConfig(t)
		cfg.NodeID = fmt.Sprintf("node%d", i+1)
		cfg.RaftAddr = addrs[i]
		cfg.Join = slices.Delete(slices.Clone(addrs), i, i+1)
		cfg.BootstrapExpect = size
		cfg.ClusterSecret = "expect-secret"
		if tweak != nil {
			tweak(&cfg)
		}
		c.cfgs[i] = cfg
	}
	return c
}

// TestCluster_BootstrapCutShort stops a node of a --bootstrap-expect
// cluster after it decided on the cluster's configuration and recorded
// its directory, but before it bootstrapped all its shards, while the
// other two form the cluster. Started again on its data, alone and
// without Join or BootstrapExpect, it must bootstrap the shards it had
// not with the same three voters, never as a cluster of its own that
// could elect itself and take writes alone; and when the others come
// back, all three serve one history.
func TestCluster_BootstrapCutShort(t *testing.T) {
	for _, point := range []string{"open shard 0", "open shard 2"} {
		t.Run(point, func(t *testing.T) {
			// Node 1 stops only once the others have formed the cluster,
			// so that they bootstrap with it rather than wait for it.
			c := expectCluster(t, 3, func(cfg *Config) { cfg.Shards = 2 })
			c.startExpecting(0, point)
			c.stop(1)
			c.stop(2)

			c.cfgs[0].Join, c.cfgs[0].BootstrapExpect, c.cfgs[0].ClusterSecret = nil, 0, ""
			c.start(0)
			c.checkConfiguration(0, "node1", "node2", "node3")

			c.start(1)
			c.start(2)
			c.waitVoters(3)
			ctx := ctxFor(t)
			a, _ := user(t, c.nodes[0].ClientAddr(), false, "ann")
			g := must(a.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "g"}))(t)
			must(a.Send(ctx, g.GroupId, "through the node cut short", ""))(t)
			c.waitConverged()
		})
	}
}

// TestCluster_RestartWithoutJoin stops a node that joined the cluster and
// starts it again on its data with neither Join nor the secret: it
// neither joins again nor bootstraps, but catches up on what was written
// while it was down and serves it.
func TestCluster_RestartWithoutJoin(t *testing.T) {
	c := newCluster(t, 3)
	ctx := ctxFor(t)
	a, _ := user(t, c.nodes[0].ClientAddr(), false, "ann")
	g := must(a.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "g"}))(t)
	c.stop(2)
	m := must(a.Send(ctx, g.GroupId, "while node3 was down", ""))(t)

	c.cfgs[2].Join, c.cfgs[2].ClusterSecret = nil, ""
	c.start(2)
	c.waitVoters(3)
	c.checkConfiguration(2, "node1", "node2", "node3")
	c.waitConverged()
	b := dial(t, c.nodes[2].ClientAddr(), false)
	must(b.Login(ctx, "ann", "pw-ann"))(t)
	page := must(b.History(ctx, g.GroupId, 0, 10))(t)
	if n := len(page.Messages); n == 0 || page.Messages[n-1].Seq != m.Seq {
		t.Fatalf("history on the restarted node: %v, want it to end at seq %d", page.Messages,
			m.Seq)
	}
}
