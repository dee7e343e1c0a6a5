package node

import (
	"bytes"
	"fmt"
	"strconv"
	"testing"

	"github.com/schat/schat/fsm"
	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// clusterFile uploads a multi-chunk file through node via and sends it to
// a new group; it returns the group, the file and its bytes.
func clusterFile(t *testing.T, c *cluster, via int) (fileGroup, *pb.FileInfo, []byte) {
	t.Helper()
	fg := newFileGroup(t, c.nodes[0])
	ctx := ctxFor(t)
	data := bytes.Repeat([]byte("cluster bytes "), fsm.ChunkSize/5)
	login := must(dial(t, c.nodes[via].ClientAddr(), false).Login(ctx, "owner", "pw-owner"))(t)
	info := must(files(t, c.nodes[via], login.Token).Upload(ctx, transport.ChatFile(fg.gid),
		"big.bin", bytes.NewReader(data), int64(len(data))))(t)
	must(fg.owner.SendFile(ctx, fg.gid, pb.MessageType_MESSAGE_TYPE_FILE, info.FileId, "", ""))(t)
	return fg, info, data
}

// TestCluster_FileThroughFollower: a file uploaded through a follower of
// its shard is on the others once acknowledged; they serve it after that
// follower dies.
func TestCluster_FileThroughFollower(t *testing.T) {
	c := newCluster(t, 3)
	shard := c.nodes[0].shardOf(1001) // the first group's shard
	follower := (c.leader(shard) + 1) % 3
	fg, info, data := clusterFile(t, c, follower)
	c.crash(follower)
	for _, n := range c.running() {
		wantDownload(t, files(t, n, fg.memberTok), info.FileId, data, "application/octet-stream")
	}
	c.waitConverged()
}

// TestCluster_FileCatchUpByLog: a node down during the upload gets the
// file from the log when it comes back.
func TestCluster_FileCatchUpByLog(t *testing.T) {
	c := newCluster(t, 3)
	c.stop(2)
	fg, info, data := clusterFile(t, c, 1)
	c.start(2)
	c.waitConverged()
	wantDownload(t, files(t, c.nodes[2], fg.memberTok), info.FileId, data, "application/octet-stream")
}

// TestCluster_FileCatchUpBySnapshot: a node down while the others
// uploaded and compacted their logs gets the file inside the snapshot it
// installs.
func TestCluster_FileCatchUpBySnapshot(t *testing.T) {
	c := newClusterWith(t, 3, smallLogs)
	c.stop(2)
	fg, info, data := clusterFile(t, c, 1)
	ctx := ctxFor(t)
	for i := 0; i < 100; i++ {
		must(fg.owner.Send(ctx, fg.gid, fmt.Sprintf("m%d", i), ""))(t)
	}
	c.snapshotAll()
	shard := c.nodes[0].shardOf(fg.gid)
	if first, _ := c.nodes[0].shards[shard].logs.FirstIndex(); first < 50 {
		t.Fatalf("log still starts at %d: not compacted", first)
	}
	c.start(2)
	c.waitConverged()
	got := c.nodes[2].shards[shard].raft.Stats()["last_snapshot_index"]
	if idx, _ := strconv.ParseUint(got, 10, 64); idx < 50 {
		t.Fatalf("restarted node's last snapshot is at %s: it did not install one", got)
	}
	wantDownload(t, files(t, c.nodes[2], fg.memberTok), info.FileId, data, "application/octet-stream")
}
