package node

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

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
	wantDownload(t, files(t, c.nodes[2], fg.memberTok), info.FileId, data,
		"application/octet-stream")
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
	c.catchUpBySnapshot(2, c.nodes[0].shardOf(fg.gid), 50)
	wantDownload(t, files(t, c.nodes[2], fg.memberTok), info.FileId, data,
		"application/octet-stream")
}

// TestCluster_SignedLinkOnOtherNodes: a signed link minted on one node
// works on the others, whose key derives from the same cluster secret;
// an expired link is refused there.
func TestCluster_SignedLinkOnOtherNodes(t *testing.T) {
	c := newCluster(t, 3)
	fg, info, data := clusterFile(t, c, 0)
	link := must(files(t, c.nodes[0], fg.memberTok).Link(ctxFor(t), info.FileId))(t)
	u := must(url.Parse(link.Url))(t)
	past := time.Now().Add(-time.Minute).Unix()
	expired := url.Values{"exp": {strconv.FormatInt(past, 10)},
		"sig": {c.nodes[0].linkSig(info.FileId, past)}}
	for i, n := range c.nodes[1:] {
		u.Host = n.HTTPAddr()
		c.waitFor("the file on every node", func() bool {
			return fileReadable(t, n, info.FileId)
		})
		r := must(http.Get(u.String()))(t)
		body, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
			t.Fatalf("node %d: link from node 1 got %d with %d bytes, want 200 with the file",
				i+2, r.StatusCode, len(body))
		}
		r = must(http.Get("http://" + n.HTTPAddr() + u.Path + "?" + expired.Encode()))(t)
		r.Body.Close()
		if r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("node %d: expired link got %d, want 401", i+2, r.StatusCode)
		}
	}
}

// fileReadable reports whether node n has applied file id.
func fileReadable(t testing.TB, n *Node, id string) bool {
	var sf *pb.StoredFile
	scope, _, _, _ := fsm.ParseFileID(id)
	n.shards[n.shardOf(scope)].fsm.View(func(tx *bolt.Tx) (err error) {
		sf, err = fsm.GetFile(tx, id)
		return err
	})
	return sf != nil
}

// TestCluster_CatchUpBoundedInBytes: a node that was down while several
// MiB were uploaded catches up by log in apply batches bounded in bytes
// (raft bounds them by count, the proposer bounds each entry), and no
// node keeps upload chunks in its log cache.
func TestCluster_CatchUpBoundedInBytes(t *testing.T) {
	const maxEntries = 8
	c := newClusterWith(t, 3, func(cfg *Config) { cfg.Raft.MaxAppendEntries = maxEntries })
	c.stop(2)
	fg := newFileGroup(t, c.nodes[0])
	data := bytes.Repeat([]byte("catch up "), 6<<20/9) // about 24 chunks
	info := must(files(t, c.nodes[1], fg.ownerTok).Upload(ctxFor(t), transport.ChatFile(fg.gid),
		"big", bytes.NewReader(data), int64(len(data))))(t)
	c.start(2)
	c.waitConverged()
	wantDownload(t, files(t, c.nodes[2], fg.memberTok), info.FileId, data,
		"application/octet-stream")

	shard := c.nodes[2].shards[c.nodes[2].shardOf(fg.gid)]
	bound := int64(maxEntries * (batchMaxBytes + 16<<10)) // entries and their batch envelopes
	t.Logf("largest apply batch %d bytes, bound %d", shard.fsm.LargestBatch(), bound)
	if got := shard.fsm.LargestBatch(); got > bound || got < fsm.ChunkSize {
		t.Fatalf("largest apply batch while catching up: %d bytes, want %d..%d",
			got, fsm.ChunkSize, bound)
	}
	for i, n := range c.nodes {
		for _, sh := range n.shards {
			// Only the few small chat entries of the set-up may be cached.
			if got := sh.cache.cached(); got >= fsm.ChunkSize {
				t.Fatalf("node %d shard %d caches %d bytes of log, want less than a chunk",
					i+1, sh.id, got)
			}
		}
	}
}
