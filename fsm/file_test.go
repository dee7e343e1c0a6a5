package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/storage"
)

func fileCmd(op any) *pb.Command {
	c := &pb.Command{}
	switch b := op.(type) {
	case *pb.FileBeginCmd:
		c.Op = &pb.Command_FileBegin{FileBegin: b}
	case *pb.FileChunkCmd:
		c.Op = &pb.Command_FileChunk{FileChunk: b}
	case *pb.FileCommitCmd:
		c.Op = &pb.Command_FileCommit{FileCommit: b}
	case *pb.FileAbortCmd:
		c.Op = &pb.Command_FileAbort{FileAbort: b}
	case *pb.FileSweepCmd:
		c.Op = &pb.Command_FileSweep{FileSweep: b}
	}
	return c
}

// testFileID is the ID of upload n to group gid.
func testFileID(gid uint64, n byte) string {
	return NewFileID(false, gid, [16]byte{n})
}

// begin opens an upload of data by uid to g1 as a chat file.
func begin(id string, uid uint64, data []byte, kind pb.FileKind) *pb.Command {
	sum := sha256.Sum256(data)
	scope, _, _, _ := ParseFileID(id)
	return fileCmd(&pb.FileBeginCmd{Info: &pb.FileInfo{FileId: id, OwnerId: uid, GroupId: scope,
		Size: uint64(len(data)), Sha256: hex.EncodeToString(sum[:]), Kind: kind,
		Mime: "application/octet-stream"}, MaxSize: 1 << 20, MaxUploads: 2})
}

// upload stores data as a committed chat file of uid in g1.
func (h *harness) upload(t testing.TB, id string, uid uint64, data []byte, kind pb.FileKind) {
	t.Helper()
	h.must(t, begin(id, uid, data, kind))
	for i := 0; i*ChunkSize < len(data); i++ {
		end := min((i+1)*ChunkSize, len(data))
		h.must(t, fileCmd(&pb.FileChunkCmd{FileId: id, Index: uint32(i),
			Data: data[i*ChunkSize : end]}))
	}
	h.must(t, fileCmd(&pb.FileCommitCmd{FileId: id}))
}

// blobExists reports whether a content with data is on disk once the
// state has committed: files go only after the commit that drops them.
func (h *harness) blobExists(data []byte) bool {
	h.f.flush()
	sum := sha256.Sum256(data)
	_, err := os.Stat(h.f.files.BlobPath(sum[:]))
	return err == nil
}

// partials counts the partial upload files on disk once the state has
// committed.
func (h *harness) partials(t testing.TB) int {
	t.Helper()
	h.f.flush()
	es, err := os.ReadDir(filepath.Join(h.f.files.Dir(), "partial"))
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

func TestFSM_FileRules(t *testing.T) {
	data := bytes.Repeat([]byte("abc"), ChunkSize/2) // two chunks
	id := testFileID(g1, 1)
	chunk := func(i uint32, b []byte) *pb.Command {
		return fileCmd(&pb.FileChunkCmd{FileId: id, Index: i, Data: b})
	}
	tests := []struct {
		name  string
		setup []*pb.Command
		cmd   *pb.Command
		want  pb.Code
	}{
		{"non-member uploads", nil, begin(id, carol, data, 0), pb.Code_NOT_MEMBER},
		{"over the size limit", nil, fileCmd(&pb.FileBeginCmd{Info: begin(id, bob, data, 0).
			GetFileBegin().Info, MaxSize: 10}), pb.Code_TOO_LARGE},
		{"ID of another group", nil, begin(testFileID(g2, 1), bob, data, 0), pb.Code_NOT_MEMBER},
		{"chunk out of order", []*pb.Command{begin(id, bob, data, 0)},
			chunk(1, data[ChunkSize:]), pb.Code_INVALID_ARGUMENT},
		{"chunk of the wrong size", []*pb.Command{begin(id, bob, data, 0)},
			chunk(0, data[:10]), pb.Code_INVALID_ARGUMENT},
		{"commit before the last chunk", []*pb.Command{begin(id, bob, data, 0),
			chunk(0, data[:ChunkSize])}, fileCmd(&pb.FileCommitCmd{FileId: id}),
			pb.Code_INVALID_ARGUMENT},
		{"too many uploads", []*pb.Command{begin(testFileID(g1, 2), bob, data, 0),
			begin(testFileID(g1, 3), bob, data, 0)}, begin(id, bob, data, 0),
			pb.Code_LIMIT_EXCEEDED},
		{"chunk of no upload", nil, chunk(0, data[:ChunkSize]), pb.Code_NOT_FOUND},
		{"bad file ID", nil, fileCmd(&pb.FileAbortCmd{FileId: "1001-zz"}),
			pb.Code_INVALID_ARGUMENT},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newWorld(t)
			for _, c := range tc.setup {
				h.must(t, c)
			}
			before := h.dump(t, false)
			wantCode(t, h.apply(t, tc.cmd), tc.want)
			sameState(t, h.dump(t, false), before)
		})
	}
}

func TestFSM_FileChecksumMismatchDropsUpload(t *testing.T) {
	h := newWorld(t)
	id := testFileID(g1, 1)
	h.must(t, begin(id, bob, []byte("right"), 0))
	h.must(t, fileCmd(&pb.FileChunkCmd{FileId: id, Data: []byte("wrong")}))
	wantCode(t, h.apply(t, fileCmd(&pb.FileCommitCmd{FileId: id})), pb.Code_INVALID_ARGUMENT)
	if n := h.partials(t); n != 0 || h.blobExists([]byte("wrong")) {
		t.Fatalf("got %d partial files after a mismatch, want none and no content", n)
	}
}

func TestFSM_FileRefcounts(t *testing.T) {
	h := newWorld(t)
	data := []byte("shared picture")
	id, twin := testFileID(g1, 1), testFileID(g1, 2)
	h.upload(t, id, bob, data, pb.FileKind_FILE_KIND_IMAGE)
	h.upload(t, twin, alice, data, pb.FileKind_FILE_KIND_IMAGE) // same bytes
	send := func(uid uint64, fid string, typ pb.MessageType) *Result {
		return h.apply(t, cmd(&pb.SendCmd{GroupId: g1, SenderId: uid, Type: typ, FileId: fid}))
	}
	img := pb.MessageType_MESSAGE_TYPE_IMAGE
	wantCode(t, send(alice, id, img), pb.Code_PERMISSION_DENIED) // not her upload
	wantCode(t, send(bob, id, pb.MessageType_MESSAGE_TYPE_VOICE), pb.Code_INVALID_ARGUMENT)
	wantCode(t, send(bob, "", img), pb.Code_INVALID_ARGUMENT)
	first := send(bob, id, img).Message.Seq
	second := send(bob, id, pb.MessageType_MESSAGE_TYPE_FILE).Message.Seq
	send(alice, twin, img)

	recall := func(seq uint64) {
		h.must(t, cmd(&pb.RecallCmd{GroupId: g1, ActorId: alice, Seq: seq}))
	}
	recall(first)
	if !h.blobExists(data) {
		t.Fatal("content gone after recalling one of two messages, want it kept")
	}
	recall(second)
	h.view(t, func(tx *bolt.Tx) error {
		if f, _ := GetFile(tx, id); f != nil {
			t.Errorf("got file %s after recalling both messages, want it gone", id)
		}
		return nil
	})
	if !h.blobExists(data) {
		t.Fatal("content gone while another file has it, want it kept")
	}
	h.must(t, cmd(&pb.DissolveCmd{GroupId: g1, ActorId: alice}))
	h.view(t, func(tx *bolt.Tx) error {
		if f, _ := GetFile(tx, twin); f != nil {
			t.Errorf("got file %s of the dissolved group, want it hidden", twin)
		}
		return nil
	})
	h.trimAll(t, &pb.TrimCmd{})
	if h.blobExists(data) {
		t.Fatal("content kept after the group was dissolved, want it gone")
	}
}

func TestFSM_GroupAvatarReplaced(t *testing.T) {
	h := newWorld(t)
	first, second := []byte("avatar one"), []byte("avatar two")
	a, b := testFileID(g1, 1), testFileID(g1, 2)
	for _, u := range []struct {
		id   string
		data []byte
	}{{a, first}, {b, second}} {
		c := begin(u.id, alice, u.data, pb.FileKind_FILE_KIND_IMAGE)
		c.GetFileBegin().Info.Purpose = pb.FilePurpose_FILE_PURPOSE_GROUP_AVATAR
		h.must(t, c)
		h.must(t, fileCmd(&pb.FileChunkCmd{FileId: u.id, Data: u.data}))
		h.must(t, fileCmd(&pb.FileCommitCmd{FileId: u.id}))
	}
	set := func(actor uint64, id string) *Result {
		return h.apply(t, cmd(&pb.UpdateGroupCmd{GroupId: g1, ActorId: actor, AvatarFileId: &id}))
	}
	wantCode(t, set(bob, a), pb.Code_PERMISSION_DENIED)
	if got := set(alice, a).Group.AvatarFileId; got != a {
		t.Fatalf("got avatar %q, want %q", got, a)
	}
	set(alice, b)
	if h.blobExists(first) || !h.blobExists(second) {
		t.Fatal("after replacing the avatar, want only the new one's content kept")
	}
}

func TestFSM_FileSweep(t *testing.T) {
	h := newWorld(t)
	id, kept := testFileID(g1, 1), testFileID(g1, 2)
	h.must(t, begin(id, bob, []byte("half of it"), 0))
	h.must(t, fileCmd(&pb.FileChunkCmd{FileId: id, Data: []byte("half of it")}))
	h.upload(t, kept, bob, []byte("unsent"), 0)
	h.now += 1000
	h.must(t, fileCmd(&pb.FileSweepCmd{UploadTimeoutMs: 500, UnclaimedMs: 5000}))
	if n := h.partials(t); n != 0 {
		t.Fatalf("got %d partial files after the sweep, want 0", n)
	}
	if !h.blobExists([]byte("unsent")) {
		t.Fatal("unclaimed file dropped before its time")
	}
	h.now += 5000
	h.must(t, fileCmd(&pb.FileSweepCmd{UploadTimeoutMs: 500, UnclaimedMs: 5000}))
	if h.blobExists([]byte("unsent")) {
		t.Fatal("unclaimed file kept after its time, want it dropped")
	}
}

// TestFSM_FileSnapshotCarriesFiles: a content deleted while a snapshot is
// held still goes into it, and restoring the snapshot brings contents
// and uploads in progress back.
func TestFSM_FileSnapshotCarriesFiles(t *testing.T) {
	h := newWorld(t)
	data := []byte("picture in a snapshot")
	id, open := testFileID(g1, 1), testFileID(g1, 2)
	h.upload(t, id, bob, data, 0)
	h.must(t, begin(open, bob, []byte("partial!"), 0))
	h.must(t, fileCmd(&pb.FileChunkCmd{FileId: open, Data: []byte("partial!")}))
	seq := h.apply(t, cmd(&pb.SendCmd{GroupId: g1, SenderId: bob,
		Type: pb.MessageType_MESSAGE_TYPE_FILE, FileId: id})).Message.Seq

	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	h.must(t, cmd(&pb.RecallCmd{GroupId: g1, ActorId: alice, Seq: seq}))
	var buf bytes.Buffer
	if err := snap.Persist(&bufSink{Buffer: &buf}); err != nil {
		t.Fatalf("persist: %v", err)
	}
	if h.blobExists(data) {
		t.Fatal("content kept after the snapshot's release, want it deleted")
	}

	other := newFSM(t, KindGroup)
	if err := other.f.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if !other.blobExists(data) || other.partials(t) != 1 {
		t.Fatal("restored shard lacks the snapshot's content or upload")
	}
	other.index = h.index
	other.must(t, fileCmd(&pb.FileCommitCmd{FileId: open}))
	if !other.blobExists([]byte("partial!")) {
		t.Fatal("upload restored mid-way did not complete")
	}
}

// TestFSM_FileReplayAfterCrash: a commit whose transaction was lost is
// applied again on restart; the partial file is still there, so the
// content is linked again.
func TestFSM_FileReplayAfterCrash(t *testing.T) {
	h := newWorld(t)
	id := testFileID(g1, 1)
	h.must(t, begin(id, bob, []byte("replayed"), 0))
	h.must(t, fileCmd(&pb.FileChunkCmd{FileId: id, Data: []byte("replayed")}))
	// The crash: the content is linked, as Apply does before its commit,
	// and the transaction never commits.
	sum := sha256.Sum256([]byte("replayed"))
	_, _, key, _ := ParseFileID(id)
	if err := h.f.files.LinkBlob(key, sum[:]); err != nil {
		t.Fatal(err)
	}
	h.reopen(t)
	if h.blobExists([]byte("replayed")) {
		t.Fatal("open kept a content the state does not count")
	}
	h.must(t, fileCmd(&pb.FileCommitCmd{FileId: id}))
	if !h.blobExists([]byte("replayed")) || h.partials(t) != 0 {
		t.Fatal("replayed commit did not leave exactly the content")
	}
}

// bufSink is a raft.SnapshotSink over a buffer.
type bufSink struct{ *bytes.Buffer }

func (bufSink) ID() string    { return "test" }
func (bufSink) Cancel() error { return nil }
func (bufSink) Close() error  { return nil }

// beginImage opens an upload of image data with thumbnail thumb and the
// given chunk size.
func beginImage(id string, uid uint64, data, thumb []byte, chunk uint32) *pb.Command {
	c := begin(id, uid, data, pb.FileKind_FILE_KIND_IMAGE)
	c.GetFileBegin().Thumbnail = thumb
	c.GetFileBegin().ChunkSize = chunk
	return c
}

func TestFSM_FileBeginRules(t *testing.T) {
	data := bytes.Repeat([]byte("x"), 3000)
	id := testFileID(g1, 1)
	tests := []struct {
		name string
		cmd  *pb.Command
		want pb.Code
	}{
		{"thumbnail over the bound", beginImage(id, bob, data, make([]byte, MaxThumbnail+1), 0),
			pb.Code_TOO_LONG},
		{"thumbnail of a non-image", fileCmd(&pb.FileBeginCmd{Info: begin(id, bob, data, 0).
			GetFileBegin().Info, Thumbnail: []byte("jpeg")}), pb.Code_INVALID_ARGUMENT},
		{"chunk size over the bound", beginImage(id, bob, data, nil, MaxChunkSize+1),
			pb.Code_INVALID_ARGUMENT},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newWorld(t)
			before := h.dump(t, false)
			wantCode(t, h.apply(t, tc.cmd), tc.want)
			sameState(t, h.dump(t, false), before)
		})
	}
}

// TestFSM_FileChunkSize: an upload's chunks have the size its begin
// named, the last one shorter.
func TestFSM_FileChunkSize(t *testing.T) {
	h := newWorld(t)
	data := bytes.Repeat([]byte("0123456789"), 250) // 2500 bytes
	id := testFileID(g1, 1)
	h.must(t, beginImage(id, bob, data, nil, 1000))
	chunk := func(i int, b []byte) *pb.Command {
		return fileCmd(&pb.FileChunkCmd{FileId: id, Index: uint32(i), Data: b})
	}
	wantCode(t, h.apply(t, chunk(0, data)), pb.Code_INVALID_ARGUMENT)
	h.must(t, chunk(0, data[:1000]))
	h.must(t, chunk(1, data[1000:2000]))
	h.must(t, chunk(2, data[2000:]))
	if res := h.must(t, fileCmd(&pb.FileCommitCmd{FileId: id})); res.File.Size != 2500 {
		t.Fatalf("got a file of %d bytes, want 2500", res.File.Size)
	}
	if !h.blobExists(data) {
		t.Fatal("content missing after the commit")
	}
}

// TestFSM_FileThumbnails: a thumbnail is kept apart from the file's
// record, which carries only its size, as do the messages; it goes with
// the file, and with an upload that never became one.
func TestFSM_FileThumbnails(t *testing.T) {
	h := newWorld(t)
	data, thumb := []byte("an image"), bytes.Repeat([]byte{0xd8}, 5000)
	id, dropped := testFileID(g1, 1), testFileID(g1, 2)
	h.must(t, beginImage(id, bob, data, thumb, 0))
	h.must(t, fileCmd(&pb.FileChunkCmd{FileId: id, Data: data}))
	info := h.must(t, fileCmd(&pb.FileCommitCmd{FileId: id})).File
	msg := h.must(t, cmd(&pb.SendCmd{GroupId: g1, SenderId: bob,
		Type: pb.MessageType_MESSAGE_TYPE_IMAGE, FileId: id})).Message
	if info.ThumbnailSize != 5000 || msg.File.ThumbnailSize != 5000 {
		t.Fatalf("got thumbnail sizes %d and %d, want 5000 in file and message",
			info.ThumbnailSize, msg.File.ThumbnailSize)
	}
	if n := proto.Size(msg); n > 1000 {
		t.Fatalf("message of %d bytes: it carries more than the thumbnail's size", n)
	}
	h.must(t, beginImage(dropped, bob, data, thumb, 0))
	h.must(t, fileCmd(&pb.FileAbortCmd{FileId: dropped}))

	thumbs := func() (got []byte, n int) {
		h.view(t, func(tx *bolt.Tx) (err error) {
			got, err = GetThumbnail(tx, id)
			n = tx.Bucket(storage.Thumbs).Stats().KeyN
			return err
		})
		return got, n
	}
	if got, n := thumbs(); !bytes.Equal(got, thumb) || n != 1 {
		t.Fatalf("got a %d-byte thumbnail and %d stored, want the 5000 bytes alone", len(got), n)
	}
	h.must(t, cmd(&pb.RecallCmd{GroupId: g1, ActorId: alice, Seq: msg.Seq}))
	if got, n := thumbs(); got != nil || n != 0 {
		t.Fatalf("got a %d-byte thumbnail and %d stored after the recall, want none", len(got), n)
	}
}

func TestParseFileID(t *testing.T) {
	random := "0123456789abcdef0123456789abcdef"
	tests := []struct {
		id    string
		ok    bool
		scope uint64
		user  bool
	}{
		{"1001-" + random, true, 1001, false},
		{"u10001-" + random, true, 10001, true},
		{"01001-" + random, false, 0, false}, // a second name for the same key
		{"1001-" + strings.ToUpper(random), false, 0, false},
		{"+1001-" + random, false, 0, false},
		{"u0-" + random, false, 0, false},
		{"0-" + random, false, 0, false},
		{"1001" + random, false, 0, false},
		{"1001-" + random[:30], false, 0, false},
		{"1001-" + random + "00", false, 0, false},
		{"18446744073709551616-" + random, false, 0, false},
		{"uu1-" + random, false, 0, false},
		{"", false, 0, false},
		{strings.Repeat("9", 1000) + "-" + random, false, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.id[:min(len(tc.id), 40)], func(t *testing.T) {
			scope, user, key, err := ParseFileID(tc.id)
			if !tc.ok {
				if !errors.Is(err, pb.ErrCode(pb.Code_INVALID_ARGUMENT)) {
					t.Fatalf("got %v, want INVALID_ARGUMENT", err)
				}
				return
			}
			if err != nil || scope != tc.scope || user != tc.user || len(key) != 24 {
				t.Fatalf("got %d %v %x %v, want scope %d user %v", scope, user, key, err,
					tc.scope, tc.user)
			}
		})
	}
}

// FuzzParseFileID: IDs come from URLs and messages. Parsing never panics,
// and an ID it accepts is the one NewFileID writes for what it parsed, so
// a file has exactly one name.
func FuzzParseFileID(f *testing.F) {
	for _, s := range []string{"1001-0123456789abcdef0123456789abcdef",
		"u10001-0123456789abcdef0123456789abcdef", "01001-00", "u-", "-", "1-",
		"18446744073709551615-ffffffffffffffffffffffffffffffff", "u1-\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		scope, user, key, err := ParseFileID(id)
		if err != nil {
			if !errors.Is(err, pb.ErrCode(pb.Code_INVALID_ARGUMENT)) {
				t.Fatalf("got error %v, want INVALID_ARGUMENT", err)
			}
			return
		}
		if len(key) != 24 || storage.ReadU64(key, 0) != scope {
			t.Fatalf("key %x does not start with scope %d", key, scope)
		}
		if again := NewFileID(user, scope, [16]byte(key[8:])); again != id {
			t.Fatalf("accepted %q, which NewFileID writes as %q", id, again)
		}
	})
}
