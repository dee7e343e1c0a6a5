package node

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "github.com/schat/schat/proto"
)

// smallLogs makes shards snapshot and compact their logs early, so that a
// node that falls behind must be brought up by snapshot installation.
func smallLogs(cfg *Config) {
	cfg.Raft.SnapshotThreshold = 32
	cfg.Raft.TrailingLogs = 16
	cfg.Raft.SnapshotInterval = 50 * time.Millisecond
	cfg.ApplyTimeout = 3 * time.Second
}

// snapshotAll snapshots every shard of every running node.
func (c *cluster) snapshotAll() {
	for _, n := range c.running() {
		for _, sh := range n.shards {
			sh.raft.Snapshot().Error() // "nothing new to snapshot" is fine
		}
	}
}

// TestCluster_SnapshotInstall: a node that was down while the others wrote
// far past their compacted logs catches up by snapshot.
func TestCluster_SnapshotInstall(t *testing.T) {
	c := newClusterWith(t, 3, smallLogs)
	ctx := ctxFor(t)
	a, _ := user(t, c.nodes[0].ClientAddr(), false, "ann")
	g := must(a.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "g"}))(t)
	shard := c.nodes[0].shardOf(g.GroupId)
	c.stop(2)
	for i := 0; i < 200; i++ {
		must(a.Send(ctx, g.GroupId, fmt.Sprintf("m%d", i), ""))(t)
	}
	c.catchUpBySnapshot(2, shard, 100)
}

// catchUpBySnapshot compacts every running node's logs past index at,
// starts the stopped node i again and waits for the cluster to converge:
// i must have done so by installing a snapshot of shard at or past at.
func (c *cluster) catchUpBySnapshot(i int, shard uint32, at uint64) {
	c.t.Helper()
	c.snapshotAll()
	if first, _ := c.running()[0].shards[shard].logs.FirstIndex(); first < at {
		c.t.Fatalf("log still starts at %d: not compacted", first)
	}
	c.start(i)
	c.waitConverged()
	got := c.nodes[i].shards[shard].raft.Stats()["last_snapshot_index"]
	if idx, _ := strconv.ParseUint(got, 10, 64); idx < at {
		c.t.Fatalf("restarted node's last snapshot is at %s: it did not install one", got)
	}
}

// TestCluster_DivergentTailSnapshot: a leader cut off with entries it
// could not commit comes back after the majority has moved on and
// compacted its log; it drops its tail, installs a snapshot and
// converges.
func TestCluster_DivergentTailSnapshot(t *testing.T) {
	c := newClusterWith(t, 3, smallLogs)
	ctx := ctxFor(t)
	owner, _ := user(t, c.nodes[0].ClientAddr(), false, "owner")
	g := must(owner.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "g"}))(t)
	shard := c.nodes[0].shardOf(g.GroupId)
	old := c.leader(shard)
	other := (old + 1) % 3

	// A member connected to the old leader keeps proposing into its tail.
	stuck, sl := user(t, c.nodes[old].ClientAddr(), false, "stuck")
	must(stuck.ApplyGroup(ctx, g.GroupId, "", ""))(t)
	if err := owner.Decide(ctx, g.GroupId, sl.User.UserId, true); err != nil {
		t.Fatal(err)
	}
	go drain(stuck)
	c.nodes[old].mux.SetIsolated(true)
	for i := 0; i < 5; i++ {
		sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		stuck.Send(sctx, g.GroupId, fmt.Sprintf("tail %d", i), fmt.Sprintf("tail-%d", i))
		cancel()
	}

	writer, wl := user(t, c.nodes[other].ClientAddr(), false, "writer")
	must(writer.ApplyGroup(ctx, g.GroupId, "", ""))(t)
	ownerOther := dial(t, c.nodes[other].ClientAddr(), false)
	must(ownerOther.Login(ctx, "owner", "pw-owner"))(t)
	if err := ownerOther.Decide(ctx, g.GroupId, wl.User.UserId, true); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 150; i++ {
		must(writer.Send(ctx, g.GroupId, fmt.Sprintf("majority %d", i), ""))(t)
	}
	c.snapshotAll()
	c.nodes[old].mux.SetIsolated(false)
	c.waitConverged()

	// None of the cut-off node's sends was acknowledged. Those appended
	// to its divergent tail were dropped with it; those still being
	// forwarded when it was healed may have landed, but at most once.
	page := must(writer.History(ctx, g.GroupId, 0, 200))(t)
	checkGapFree(t, page.Messages)
	seen := make(map[string]bool)
	for _, m := range page.Messages {
		if strings.HasPrefix(m.ClientMsgId, "tail-") {
			if seen[m.ClientMsgId] {
				t.Fatalf("%s stored twice", m.ClientMsgId)
			}
			seen[m.ClientMsgId] = true
		}
	}
}
