package node

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/schat/schat/fsm"
	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/storage"
	"github.com/schat/schat/transport"
)

// deployment is what populate wrote: the users and their groups.
type deployment struct {
	users  []string
	groups []uint64
}

// populate fills a deployment through its client port with every kind of
// record: users, groups with and without a join password, members,
// pending applications, messages, a recall and read cursors.
func populate(t testing.TB, addr string) deployment {
	t.Helper()
	ctx := ctxFor(t)
	ann, _ := user(t, addr, false, "ann")
	bob, bobLogin := user(t, addr, false, "bob")
	cat, _ := user(t, addr, false, "cat")
	dan, _ := user(t, addr, false, "dan")
	for _, c := range []interface{ Close() error }{ann, bob, cat, dan} {
		defer c.Close()
	}
	g1 := must(ann.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "g1"}))(t)
	g2 := must(ann.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "g2", JoinPassword: "pw-g2"}))(t)
	must(bob.ApplyGroup(ctx, g1.GroupId, "", "let me in"))(t)
	if err := ann.Decide(ctx, g1.GroupId, bobLogin.User.UserId, true); err != nil {
		t.Fatal(err)
	}
	must(cat.ApplyGroup(ctx, g1.GroupId, "", "pending in g1"))(t)
	must(dan.ApplyGroup(ctx, g2.GroupId, "pw-g2", "pending in g2"))(t)
	for i := range 30 {
		who := ann
		if i%2 == 1 {
			who = bob
		}
		must(who.Send(ctx, g1.GroupId, fmt.Sprintf("g1 message %d", i), ""))(t)
	}
	for i := range 10 {
		must(ann.Send(ctx, g2.GroupId, fmt.Sprintf("g2 message %d", i), ""))(t)
	}
	must(ann.Recall(ctx, g1.GroupId, 3))(t)
	must(bob.MarkRead(ctx, g1.GroupId, 12))(t)
	must(ann.MarkRead(ctx, g2.GroupId, 7))(t)
	return deployment{users: []string{"ann", "bob", "cat", "dan"},
		groups: []uint64{g1.GroupId, g2.GroupId}}
}

// uploaded is a file populateFiles left referred to, and its bytes.
type uploaded struct {
	id, mime string
	data     []byte
}

// populateFiles adds files to a populated deployment through n's HTTP
// upload path, as clients upload them: an image message and a file of
// several chunks sent twice to g1, one of the two sends recalled, a file
// message recalled whole (its bytes go), ann's avatar and g1's avatar. It
// returns the files that stay.
func populateFiles(t testing.TB, n *Node, d deployment) []uploaded {
	t.Helper()
	ctx := ctxFor(t)
	ann := dial(t, n.ClientAddr(), false)
	login := must(ann.Login(ctx, "ann", "pw-ann"))(t)
	go drain(ann)
	fc := files(t, n, login.Token)
	g1 := d.groups[0]
	upload := func(target transport.UploadTarget, name string, data []byte) *pb.FileInfo {
		t.Helper()
		return must(fc.Upload(ctx, target, name, bytes.NewReader(data), int64(len(data))))(t)
	}
	send := func(info *pb.FileInfo) *pb.ChatMessage {
		t.Helper()
		return must(ann.SendFile(ctx, g1, transport.MessageTypeOf(info.Kind), info.FileId,
			"", ""))(t)
	}

	pic := testPNG(t, 120, 80)
	picInfo := upload(transport.ChatFile(g1), "pic.png", pic)
	send(picInfo)
	big := bytes.Repeat([]byte("backup file bytes "), 3*fsm.ChunkSize/17)
	bigInfo := upload(transport.ChatFile(g1), "big.bin", big)
	first := send(bigInfo)
	send(bigInfo)
	must(ann.Recall(ctx, g1, first.Seq))(t)
	gone := upload(transport.ChatFile(g1), "gone.txt", []byte("recalled whole"))
	must(ann.Recall(ctx, g1, send(gone).Seq))(t)

	avatar := testPNG(t, 16, 16)
	must(ann.SetAvatar(ctx, upload(transport.UserAvatar(), "me.png", avatar).FileId))(t)
	gav := testPNG(t, 24, 12)
	gavInfo := upload(transport.GroupAvatar(g1), "g1.png", gav)
	must(ann.SetGroupAvatar(ctx, g1, gavInfo.FileId))(t)
	avInfo := must(ann.Profiles(ctx, login.User.UserId))(t)[0]
	return []uploaded{{picInfo.FileId, "image/png", pic},
		{bigInfo.FileId, "application/octet-stream", big},
		{avInfo.AvatarFileId, "image/png", avatar}, {gavInfo.FileId, "image/png", gav}}
}

// wantFiles downloads every file from n, as ann, and compares its bytes.
func wantFiles(t testing.TB, n *Node, fs []uploaded) {
	t.Helper()
	c := dial(t, n.ClientAddr(), false)
	login := must(c.Login(ctxFor(t), "ann", "pw-ann"))(t)
	for _, f := range fs {
		wantDownload(t, files(t, n, login.Token), f.id, f.data, f.mime)
	}
}

// fileLines counts the lines of a dump that name a file on disk.
func fileLines(dump string) int { return strings.Count(dump, "\nfile ") }

// httpBackup takes a backup through n's /cluster/backup, as `schat
// backup --addr` does, into a file, and returns the file and its
// checked manifest.
func httpBackup(t testing.TB, n *Node) (string, *storage.Manifest) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "schat.backup")
	fetchBackupFile(t, n, path)
	return path, verifyFile(t, path)
}

func verifyFile(t testing.TB, path string) *storage.Manifest {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := storage.VerifyBackup(f)
	if err != nil {
		t.Fatalf("verify %s: %v", path, err)
	}
	return m
}

// freeAddr returns a loopback address that was free a moment ago: a
// restored node's raft address must be known before it starts.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// restoreNode restores file into a fresh data directory and starts a node
// on it.
func restoreNode(t testing.TB, file string) (*Node, Config, *RestoreResult) {
	t.Helper()
	cfg := testConfig(t)
	cfg.NodeID = "restored1"
	cfg.RaftAddr = freeAddr(t)
	cfg.Shards = 0 // the directory's
	res, err := Restore(RestoreConfig{From: file, DataDir: cfg.DataDir, NodeID: cfg.NodeID,
		RaftAddr: cfg.RaftAddr})
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	return startNode(t, cfg), cfg, res
}

// restoreRecords are the prefixes of the lines of fsmDump that a restore
// adds: the incarnations and the restored seqs.
var restoreRecords = []string{
	"meta " + hex.EncodeToString([]byte("incarnation")) + " ",
	"meta " + hex.EncodeToString([]byte("previous_incarnation")) + " ",
	string(storage.Restored) + " ",
}

// logicalDump is fsmDump without the records a restore adds.
func logicalDump(t testing.TB, f *fsm.FSM) string {
	t.Helper()
	var keep []string
	for _, l := range strings.SplitAfter(fsmDump(t, f), "\n") {
		if !slices.ContainsFunc(restoreRecords, func(p string) bool {
			return strings.HasPrefix(l, p)
		}) {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "")
}

// compareNodes fails unless every shard of a and b holds the same records
// and files; it returns how many files the dumps name.
func compareNodes(t testing.TB, a, b *Node) int {
	t.Helper()
	if len(a.shards) != len(b.shards) {
		t.Fatalf("got %d shards, want %d", len(b.shards), len(a.shards))
	}
	n := 0
	for s := range a.shards {
		want, got := logicalDump(t, a.shards[s].fsm), logicalDump(t, b.shards[s].fsm)
		if got != want {
			t.Fatalf("shard %s differs after restore:\n got %d bytes\nwant %d bytes",
				shardLabel(uint32(s)), len(got), len(want))
		}
		n += fileLines(want)
	}
	return n
}

// TestBackup_ClusterRestoresIdentically backs a three-node cluster up
// through one of its followers, restores the file into a fresh data
// directory, and checks that the restored node holds every record of
// the source, that every user logs in with the old password, and that
// two new nodes join it and converge.
func TestBackup_ClusterRestoresIdentically(t *testing.T) {
	c := newClusterWith(t, 3, func(cfg *Config) { cfg.Shards = 2 })
	d := populate(t, c.nodes[0].ClientAddr())
	kept := populateFiles(t, c.nodes[1], d)
	c.waitConverged()
	via := (c.leader(metaShard) + 1) % 3
	file, m := httpBackup(t, c.nodes[via])
	if m.Shards != 2 || len(m.Parts) != 3 || m.ClusterID != c.nodes[0].info.ClusterID ||
		m.Counts.Users != 4 || m.Counts.Groups != 2 ||
		m.Counts.Messages != messagesIn(c.nodes[0]) || m.Counts.Files != uint64(len(kept)) {
		t.Fatalf("manifest %+v", m)
	}

	n, cfg, res := restoreNode(t, file)
	if got := compareNodes(t, c.nodes[0], n); got != len(kept) {
		t.Fatalf("the dumps name %d files on disk, want the %d contents kept", got, len(kept))
	}
	wantFiles(t, n, kept)
	if res.ClusterID == m.ClusterID || n.info.ClusterID != res.ClusterID {
		t.Fatalf("restored cluster ID %q, backup's %q: want a new one", res.ClusterID, m.ClusterID)
	}
	for _, name := range d.users {
		cl := dial(t, n.ClientAddr(), false)
		l := must(cl.Login(ctxFor(t), name, "pw-"+name))(t)
		if l.Incarnation != res.Incarnation || l.Incarnation == 0 {
			t.Fatalf("%s: incarnation %d, want %d", name, l.Incarnation, res.Incarnation)
		}
		cl.Close()
	}

	joined := joinRestored(t, n, cfg, res)
	ann, _ := user(t, n.ClientAddr(), false, "eve")
	must(ann.CreateGroup(ctxFor(t), &pb.CreateGroupRequest{Name: "after restore"}))(t)
	joined.waitConverged()
	wantFiles(t, joined.nodes[2], kept)
}

// joinRestored starts two new nodes that join the restored node n and
// waits until all three are voters of every shard.
func joinRestored(t testing.TB, n *Node, cfg Config, res *RestoreResult) *cluster {
	t.Helper()
	c := &cluster{t: t, nodes: []*Node{n, nil, nil}, cfgs: []Config{cfg, {}, {}}}
	for i := 1; i < 3; i++ {
		c.cfgs[i] = testConfig(t)
		c.cfgs[i].NodeID = fmt.Sprintf("joined%d", i)
		c.cfgs[i].Shards = 0 // the cluster's
		c.cfgs[i].Join = []string{n.RaftAddr()}
		c.cfgs[i].ClusterSecret = string(res.Secret)
		c.start(i)
	}
	c.waitVoters(3)
	return c
}

// TestBackup_UnderConcurrentWrites takes a backup while clients write and
// proves each restored shard is the source's state at the index the
// manifest names: replaying the source's log after that index onto the
// restored state gives the source's final state, record for record. Every
// message acknowledged before the backup began is in it.
func TestBackup_UnderConcurrentWrites(t *testing.T) {
	cfg := testConfig(t)
	cfg.Shards = 2
	src := startNode(t, cfg)
	d := populate(t, src.ClientAddr())
	w := writeConcurrently(t, src.ClientAddr(), d.groups)
	w.await(50)
	before := w.ackedSeqs()
	file, m := httpBackup(t, src)
	w.await(w.acked.Load() + 50)
	w.stop()

	dir := filepath.Join(t.TempDir(), "restored")
	if _, err := Restore(RestoreConfig{From: file, DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	for s, part := range m.Parts {
		f := openRestoredShard(t, dir, uint32(s))
		for gid, seq := range before {
			if src.shardOf(gid) == uint32(s) && !hasMessage(f, gid, seq) {
				t.Fatalf("group %d: message %d, acknowledged before the backup, is missing",
					gid, seq)
			}
		}
		replayAfter(t, src.shards[s], f, part.Index)
		if got, want := logicalDump(t, f), stateDump(t, src, s); got != want {
			t.Fatalf("shard %d at %d plus the later log differs from the source", s, part.Index)
		}
	}
}

// writers send messages from two users into groups until stopped.
type writers struct {
	acked atomic.Int64
	mu    sync.Mutex
	seqs  map[uint64]uint64 // group -> highest acknowledged seq
	done  chan struct{}
	wg    sync.WaitGroup
}

func writeConcurrently(t testing.TB, addr string, groups []uint64) *writers {
	t.Helper()
	w := &writers{seqs: make(map[uint64]uint64), done: make(chan struct{})}
	for _, name := range []string{"ann", "bob"} {
		cl := dial(t, addr, false)
		must(cl.Login(ctxFor(t), name, "pw-"+name))(t)
		go drain(cl)
		w.wg.Add(1)
		go w.run(cl, groups)
	}
	t.Cleanup(w.stop)
	return w
}

func (w *writers) run(cl *transport.Client, groups []uint64) {
	defer w.wg.Done()
	for i := 0; ; i++ {
		select {
		case <-w.done:
			return
		default:
		}
		gid := groups[i%len(groups)]
		m, err := cl.Send(context.Background(), gid, fmt.Sprintf("concurrent %d", i), "")
		if err != nil {
			continue // bob is not a member of g2
		}
		w.mu.Lock()
		w.seqs[gid] = max(w.seqs[gid], m.Seq)
		w.mu.Unlock()
		w.acked.Add(1)
	}
}

func (w *writers) await(n int64) { awaitAcks(&w.acked, n) }

func (w *writers) ackedSeqs() map[uint64]uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.seqs)
}

func (w *writers) stop() {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	w.wg.Wait()
}

// messagesIn counts the messages stored on n, system notes included.
func messagesIn(n *Node) uint64 {
	var sum uint64
	for _, sh := range n.shards {
		sh.fsm.View(func(tx *bolt.Tx) error {
			sum += uint64(tx.Bucket(storage.Messages).Stats().KeyN)
			return nil
		})
	}
	return sum
}

func hasMessage(f *fsm.FSM, gid, seq uint64) bool {
	var has bool
	f.View(func(tx *bolt.Tx) error {
		has = tx.Bucket(storage.Messages).Get(storage.U64s(gid, seq)) != nil
		return nil
	})
	return has
}

// openRestoredShard opens a shard's state in a restored data directory.
func openRestoredShard(t testing.TB, dir string, id uint32) *fsm.FSM {
	t.Helper()
	f, err := fsm.Open(shardFSMConfig(shardDir(dir, id), id, testConfig(t).Logger))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// replayAfter applies to f every entry of sh's log after index, once sh
// has applied its whole log.
func replayAfter(t testing.TB, sh *shard, f *fsm.FSM, index uint64) {
	t.Helper()
	last := sh.raft.LastIndex()
	waitUntil(t, "the source to apply its log", func() bool {
		return sh.raft.AppliedIndex() >= last
	})
	var logs []*raft.Log
	for i := index + 1; i <= last; i++ {
		var l raft.Log
		if err := sh.logs.GetLog(i, &l); err != nil {
			t.Fatalf("log %d: %v", i, err)
		}
		logs = append(logs, &l)
	}
	if len(logs) > 0 {
		f.ApplyBatch(logs)
	}
}

// waitUntil polls cond until it holds or 20 seconds pass.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
