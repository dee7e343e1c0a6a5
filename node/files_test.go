package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sync/semaphore"

	"github.com/schat/schat/fsm"
	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// testPNG is a w×h PNG with a gradient, so that it does not compress to
// nothing.
func testPNG(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.NRGBA{uint8(x * 7), uint8(y * 3), uint8(x ^ y), 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// files is a file client of n acting for a login's token.
func files(t testing.TB, n *Node, token string) *transport.FileClient {
	t.Helper()
	fc, err := transport.NewFileClient("http://"+n.HTTPAddr(), token, nil)
	if err != nil {
		t.Fatal(err)
	}
	return fc
}

// chatUpload uploads data as a chat file named name to group gid with
// token through n, failing the test on a refusal.
func chatUpload(t testing.TB, n *Node, token string, gid uint64, name string,
	data []byte) *pb.FileInfo {
	t.Helper()
	return must(files(t, n, token).Upload(ctxT(t), transport.ChatFile(gid), name,
		bytes.NewReader(data), int64(len(data))))(t)
}

// fileGroup is a group owned by "owner" with member "member", both logged
// in on n.
type fileGroup struct {
	gid           uint64
	owner, member *transport.Client
	ownerTok      string
	memberTok     string
	ownerID       uint64
}

func newFileGroup(t testing.TB, n *Node) fileGroup {
	t.Helper()
	ctx := ctxT(t)
	owner, ol := user(t, n.ClientAddr(), false, "owner")
	member, ml := user(t, n.ClientAddr(), false, "member")
	g := must(owner.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "pics", Public: true}))(t)
	must(member.ApplyGroup(ctx, g.GroupId, "", ""))(t)
	if err := owner.Decide(ctx, g.GroupId, ml.User.UserId, true); err != nil {
		t.Fatal(err)
	}
	go drain(owner)
	go drain(member)
	return fileGroup{gid: g.GroupId, owner: owner, member: member, ownerTok: ol.Token,
		memberTok: ml.Token, ownerID: ol.User.UserId}
}

// download fetches a file whole and checks it is data.
func wantDownload(t testing.TB, fc *transport.FileClient, id string, data []byte, mime string) {
	t.Helper()
	var buf bytes.Buffer
	h, err := fc.Download(ctxT(t), id, &buf)
	if err != nil {
		t.Fatalf("download %s: %v", id, err)
	}
	sum := sha256.Sum256(data)
	switch {
	case !bytes.Equal(buf.Bytes(), data):
		t.Fatalf("downloaded %d bytes differ from the %d uploaded", buf.Len(), len(data))
	case h.Get("Content-Type") != mime:
		t.Fatalf("got Content-Type %q, want %q", h.Get("Content-Type"), mime)
	case h.Get("Content-Length") != fmt.Sprint(len(data)):
		t.Fatalf("got Content-Length %q, want %d", h.Get("Content-Length"), len(data))
	case h.Get("ETag") != `"`+hex.EncodeToString(sum[:])+`"`:
		t.Fatalf("got ETag %q, want the SHA-256", h.Get("ETag"))
	}
}

// storedFiles lists the contents, partial uploads and spool files on n's
// disk once every shard's state file holds what was applied: a file the
// state drops goes with the commit that drops it, and a read commits.
func storedFiles(t testing.TB, n *Node) []string {
	t.Helper()
	for _, sh := range n.shards {
		if err := sh.fsm.View(func(*bolt.Tx) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	var out []string
	err := filepath.WalkDir(n.cfg.DataDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(n.cfg.DataDir, path)
		if strings.Contains(rel, "files"+string(filepath.Separator)) ||
			strings.HasPrefix(rel, spoolDirName) {
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFiles_RoundTrip: an image uploaded and sent by one member is seen by
// the other on another connection and downloads byte-identical, whole, by
// range and by signed link.
func TestFiles_RoundTrip(t *testing.T) {
	n := startNode(t, testConfig(t))
	fg := newFileGroup(t, n)
	ctx := ctxT(t)
	data := testPNG(t, 300, 200)
	info := chatUpload(t, n, fg.ownerTok, fg.gid, "cat.png", data)
	if info.Kind != pb.FileKind_FILE_KIND_IMAGE || info.Size != uint64(len(data)) ||
		info.Width != 300 || info.Height != 200 || info.ThumbnailSize == 0 {
		t.Fatalf("got upload %v, want a 300x200 image of %d bytes with a thumbnail",
			info, len(data))
	}
	msg := must(fg.owner.SendFile(ctx, fg.gid, pb.MessageType_MESSAGE_TYPE_IMAGE, info.FileId,
		"look", ""))(t)

	other := dial(t, n.ClientAddr(), false)
	must(other.Login(ctx, "member", "pw-member"))(t)
	page := must(other.History(ctx, fg.gid, 0, 10))(t)
	got := page.Messages[len(page.Messages)-1]
	if got.Seq != msg.Seq || got.File.GetFileId() != info.FileId || got.File.Name != "cat.png" ||
		got.File.ThumbnailSize != info.ThumbnailSize {
		t.Fatalf("got message %v, want the image", got)
	}
	fc := files(t, n, fg.memberTok)
	wantDownload(t, fc, info.FileId, data, "image/png")
	wantThumbnail(t, fc, info, 128, 85)

	wantRange(t, fc, info.FileId, data, 100, 199)

	link := must(fc.Link(ctx, info.FileId))(t)
	for _, u := range []struct {
		url  string
		want []byte
	}{{link.Url, data}, {link.ThumbnailUrl, must(fc.Thumbnail(ctx, info.FileId))(t)}} {
		r := must(http.Get(u.url))(t)
		body, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode != http.StatusOK || !bytes.Equal(body, u.want) {
			t.Fatalf("signed link %s: got %d with %d bytes, want 200 with %d", u.url,
				r.StatusCode, len(body), len(u.want))
		}
	}
}

// wantThumbnail fetches an image's thumbnail and checks it is a JPEG of
// w×h within the size bound, as its description says.
func wantThumbnail(t testing.TB, fc *transport.FileClient, info *pb.FileInfo, w, h int) {
	t.Helper()
	thumb := must(fc.Thumbnail(ctxT(t), info.FileId))(t)
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(thumb))
	switch {
	case err != nil:
		t.Fatalf("thumbnail does not decode as JPEG: %v", err)
	case len(thumb) != int(info.ThumbnailSize) || len(thumb) > fsm.MaxThumbnail:
		t.Fatalf("got a thumbnail of %d bytes, want %d, at most %d", len(thumb),
			info.ThumbnailSize, fsm.MaxThumbnail)
	case cfg.Width != w || cfg.Height != h:
		t.Fatalf("got a %dx%d thumbnail, want %dx%d", cfg.Width, cfg.Height, w, h)
	}
}

// wantRange fetches bytes from..to of a file and checks the 206 answer.
func wantRange(t testing.TB, fc *transport.FileClient, id string, data []byte, from, to int) {
	t.Helper()
	resp := must(fc.Get(ctxT(t), id, fmt.Sprintf("bytes=%d-%d", from, to)))(t)
	part, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantRange := fmt.Sprintf("bytes %d-%d/%d", from, to, len(data))
	switch {
	case resp.StatusCode != http.StatusPartialContent || !bytes.Equal(part, data[from:to+1]):
		t.Fatalf("got range status %d with %d bytes, want 206 with bytes %d-%d",
			resp.StatusCode, len(part), from, to)
	case resp.Header.Get("Content-Range") != wantRange:
		t.Fatalf("got Content-Range %q, want %q", resp.Header.Get("Content-Range"), wantRange)
	case resp.Header.Get("Content-Length") != fmt.Sprint(to-from+1):
		t.Fatalf("got Content-Length %q for a range of %d", resp.Header.Get("Content-Length"),
			to-from+1)
	}
}

// TestFiles_Refusals: every refused upload or download leaves nothing
// stored and answers with its code.
func TestFiles_Refusals(t *testing.T) {
	cfg := testConfig(t)
	cfg.Files = DefaultConfig().Files
	cfg.Files.MaxSize = 64 << 10
	n := startNode(t, cfg)
	fg := newFileGroup(t, n)
	ctx := ctxT(t)
	_, sl := user(t, n.ClientAddr(), false, "stranger")
	stranger := files(t, n, sl.Token)
	big := bytes.Repeat([]byte("x"), 64<<10+1)

	_, err := files(t, n, fg.ownerTok).Upload(ctx, transport.ChatFile(fg.gid), "big",
		bytes.NewReader(big), int64(len(big)))
	wantCode(t, err, pb.Code_TOO_LARGE)
	_, err = files(t, n, fg.ownerTok).Upload(ctx, transport.ChatFile(fg.gid), "big",
		io.MultiReader(bytes.NewReader(big)), -1) // no length: refused while streaming
	wantCode(t, err, pb.Code_TOO_LARGE)
	_, err = stranger.Upload(ctx, transport.ChatFile(fg.gid), "x", strings.NewReader("hi"), 2)
	wantCode(t, err, pb.Code_NOT_MEMBER)
	_, err = files(t, n, "not-a-token").Upload(ctx, transport.ChatFile(fg.gid), "x",
		strings.NewReader("hi"), 2)
	wantCode(t, err, pb.Code_UNAUTHENTICATED)
	_, err = files(t, n, fg.memberTok).Upload(ctx, transport.GroupAvatar(fg.gid), "x",
		bytes.NewReader(testPNG(t, 4, 4)), -1)
	wantCode(t, err, pb.Code_PERMISSION_DENIED)
	cutUpload(t, n, fg.ownerTok, fg.gid)
	n.waitNoSpool(t)
	if got := storedFiles(t, n); len(got) != 0 {
		t.Fatalf("got files %v after refused uploads, want none", got)
	}
	if n.spools.inUse() != 0 {
		t.Fatalf("got %d spool slots taken after the uploads ended, want 0", n.spools.inUse())
	}

	// A real file, which others may not read.
	data := []byte("%PDF-1.4 a document")
	info := chatUpload(t, n, fg.memberTok, fg.gid, "a.pdf", data)
	if info.Kind != pb.FileKind_FILE_KIND_GENERIC || info.Mime != "application/octet-stream" {
		t.Fatalf("got %v %q for a PDF, want a generic file", info.Kind, info.Mime)
	}
	_, err = stranger.Download(ctx, info.FileId, io.Discard)
	wantCode(t, err, pb.Code_NOT_MEMBER)
	_, err = files(t, n, "bad").Download(ctx, info.FileId, io.Discard)
	wantCode(t, err, pb.Code_UNAUTHENTICATED)
	for _, q := range []string{"?exp=9999999999&sig=forged",
		fmt.Sprintf("?exp=%d&sig=%s", time.Now().Unix()-1,
			n.linkSig(info.FileId, time.Now().Unix()-1))} {
		r := must(http.Get("http://" + n.HTTPAddr() + "/files/" + info.FileId + q))(t)
		r.Body.Close()
		if r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("link %s: got status %d, want 401", q, r.StatusCode)
		}
	}
}

// cutUpload starts an upload announcing more bytes than it sends, waits
// until the node has spooled all it sent, and then closes the connection
// half-way.
func cutUpload(t testing.TB, n *Node, token string, gid uint64) {
	t.Helper()
	c := startUpload(t, n, token, gid, 40000)
	c.Write(bytes.Repeat([]byte("y"), 20000))
	n.waitSpooled(t, 20000)
	c.Close()
}

// startUpload opens a connection to n's HTTP port and sends the head of
// an upload to group gid announcing size bytes; the caller sends the body
// and closes the connection.
func startUpload(t testing.TB, n *Node, token string, gid uint64, size int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", n.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST /upload/group/%d?name=cut HTTP/1.1\r\nHost: x\r\n"+
		"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", gid, token, size)
	return c
}

// spoolSizes lists the sizes of n's spool files.
func (n *Node) spoolSizes(t testing.TB) []int64 {
	t.Helper()
	es, err := os.ReadDir(n.spoolDir())
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, e := range es {
		if fi, err := e.Info(); err == nil {
			out = append(out, fi.Size())
		}
	}
	return out
}

// waitSpooled waits until one of n's spool files holds at least size
// bytes: an upload has reached its body and the node is storing it.
func (n *Node) waitSpooled(t testing.TB, size int64) {
	t.Helper()
	n.waitSpool(t, fmt.Sprintf("a spool file of %d bytes", size), func(sizes []int64) bool {
		for _, s := range sizes {
			if s >= size {
				return true
			}
		}
		return false
	})
}

// waitNoSpool waits until no upload is being spooled on n.
func (n *Node) waitNoSpool(t testing.TB) {
	t.Helper()
	n.waitSpool(t, "no spool file", func(sizes []int64) bool { return len(sizes) == 0 })
}

// waitSpool polls n's spool files until ok accepts their sizes.
func (n *Node) waitSpool(t testing.TB, what string, ok func([]int64) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for sizes := n.spoolSizes(t); !ok(sizes); sizes = n.spoolSizes(t) {
		if time.Now().After(deadline) {
			t.Fatalf("waited for %s; spool files have sizes %v", what, sizes)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFiles_RefcountAndAvatars: bytes stay while a message or avatar
// refers to them and go with the last reference; avatars show in
// profiles, group info and the public listing.
func TestFiles_RefcountAndAvatars(t *testing.T) {
	n := startNode(t, testConfig(t))
	fg := newFileGroup(t, n)
	ctx := ctxT(t)
	fc := files(t, n, fg.ownerTok)
	data := []byte("#!AMR\n voice bytes")
	info := must(fc.Upload(ctx, transport.ChatFile(fg.gid), "v.amr", bytes.NewReader(data), -1))(t)
	if info.Kind != pb.FileKind_FILE_KIND_VOICE {
		t.Fatalf("got kind %v for AMR, want voice", info.Kind)
	}
	voice := pb.MessageType_MESSAGE_TYPE_VOICE
	m1 := must(fg.owner.SendFile(ctx, fg.gid, voice, info.FileId, "", ""))(t)
	m2 := must(fg.owner.SendFile(ctx, fg.gid, voice, info.FileId, "", ""))(t)
	must(fg.owner.Recall(ctx, fg.gid, m1.Seq))(t)
	wantDownload(t, fc, info.FileId, data, "audio/amr")
	must(fg.owner.Recall(ctx, fg.gid, m2.Seq))(t)
	_, err := fc.Download(ctx, info.FileId, io.Discard)
	wantCode(t, err, pb.Code_NOT_FOUND)

	av1 := must(fc.Upload(ctx, transport.UserAvatar(), "me.png",
		bytes.NewReader(testPNG(t, 8, 8)), -1))(t)
	av2 := must(fc.Upload(ctx, transport.UserAvatar(), "me2.png",
		bytes.NewReader(testPNG(t, 9, 9)), -1))(t)
	must(fg.owner.SetAvatar(ctx, av1.FileId))(t)
	must(fg.owner.SetAvatar(ctx, av2.FileId))(t)
	profiles := must(fg.member.Profiles(ctx, fg.ownerID))(t)
	if profiles[0].AvatarFileId != av2.FileId {
		t.Fatalf("got avatar %q in the profile, want %q", profiles[0].AvatarFileId, av2.FileId)
	}
	_, err = fc.Download(ctx, av1.FileId, io.Discard)
	wantCode(t, err, pb.Code_NOT_FOUND)
	wantDownload(t, files(t, n, fg.memberTok), av2.FileId, testPNG(t, 9, 9), "image/png")

	gav := must(fc.Upload(ctx, transport.GroupAvatar(fg.gid), "g.png",
		bytes.NewReader(testPNG(t, 5, 5)), -1))(t)
	must(fg.owner.SetGroupAvatar(ctx, fg.gid, gav.FileId))(t)
	ground := must(fg.member.PublicGroups(ctx, 0, 0))(t)
	if ground.Groups[0].AvatarFileId != gav.FileId {
		t.Fatalf("got public listing %v, want the group avatar", ground.Groups[0])
	}
	if err := fg.owner.Dissolve(ctx, fg.gid); err != nil {
		t.Fatal(err)
	}
	_, err = fc.Download(ctx, gav.FileId, io.Discard)
	wantCode(t, err, pb.Code_NOT_FOUND)
}

// TestFiles_AbandonedUploadSwept: an upload whose proposer vanished
// after its first chunk is dropped by the sweep, with its bytes.
func TestFiles_AbandonedUploadSwept(t *testing.T) {
	cfg := testConfig(t)
	cfg.Files = DefaultConfig().Files
	cfg.Files.UploadTimeout = time.Millisecond
	n := startNode(t, cfg)
	fg := newFileGroup(t, n)
	ctx := ctxT(t)
	data := bytes.Repeat([]byte("z"), fsm.ChunkSize+10)
	sum := sha256.Sum256(data)
	id := fsm.NewFileID(false, fg.gid, [16]byte{7})
	shard := n.shardOf(fg.gid)
	must(n.exec(ctx, nil, shard, &pb.Command{Op: &pb.Command_FileBegin{FileBegin: &pb.FileBeginCmd{
		Info: &pb.FileInfo{FileId: id, GroupId: fg.gid, OwnerId: fg.ownerID,
			Size: uint64(len(data)), Sha256: hex.EncodeToString(sum[:])}}}}))(t)
	must(n.exec(ctx, nil, shard, &pb.Command{Op: &pb.Command_FileChunk{FileChunk: &pb.FileChunkCmd{
		FileId: id, Data: data[:fsm.ChunkSize]}}}))(t)
	if len(storedFiles(t, n)) != 1 {
		t.Fatalf("got files %v, want the partial upload", storedFiles(t, n))
	}
	deadline := time.Now().Add(5 * time.Second)
	for n.sweepFiles(); len(storedFiles(t, n)) > 0; n.sweepFiles() {
		if time.Now().After(deadline) {
			t.Fatalf("got files %v after sweeps, want none", storedFiles(t, n))
		}
	}
}

// TestFiles_ConcurrentUploads: several clients upload to one group at
// once; each gets its own file back intact.
func TestFiles_ConcurrentUploads(t *testing.T) {
	n := startNode(t, testConfig(t))
	fg := newFileGroup(t, n)
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		tok := fg.ownerTok
		if i%2 == 1 {
			tok = fg.memberTok
		}
		data := bytes.Repeat([]byte{byte(i)}, fsm.ChunkSize*2+i*1000)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fc := files(t, n, tok)
			info, err := fc.Upload(ctx, transport.ChatFile(fg.gid), "f", bytes.NewReader(data), -1)
			if err == nil {
				var buf bytes.Buffer
				if _, err = fc.Download(ctx, info.FileId, &buf); err == nil &&
					!bytes.Equal(buf.Bytes(), data) {
					err = fmt.Errorf("upload %d came back different", i)
				}
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// Type detection samples: the first bytes of each allowed kind, and
// look-alikes that must not pass for them.
var (
	oggPage = func(codec string) []byte {
		b := []byte("OggS\x00\x02")
		b = append(b, make([]byte, 20)...) // granule, serial, sequence, CRC
		b = append(b, 1, byte(len(codec)+11))
		return append(b, []byte(codec+"\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00")...)
	}
	ftyp = func(brand string) []byte {
		return append([]byte{0, 0, 0, 0x18},
			[]byte("ftyp"+brand+"\x00\x00\x00\x00"+brand+"isom")...)
	}
	webm = []byte("\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm\x42\x87\x81\x04")
	mkv  = []byte("\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82\x88matroska\x42\x87\x81\x04")
	// pngHeader is a PNG signature and an IHDR chunk claiming w×h.
	pngHeader = func(w, h uint32) []byte {
		chunk := []byte("IHDR")
		chunk = binary.BigEndian.AppendUint32(chunk, w)
		chunk = binary.BigEndian.AppendUint32(chunk, h)
		chunk = append(chunk, 8, 6, 0, 0, 0)
		b := append([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0d"), chunk...)
		return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(chunk))
	}
)

func TestDetectType(t *testing.T) {
	tests := []struct {
		name string
		head []byte
		want pb.FileKind
	}{
		{"png", testPNG(t, 2, 2), pb.FileKind_FILE_KIND_IMAGE},
		{"jpeg", []byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00"), pb.FileKind_FILE_KIND_IMAGE},
		{"gif", []byte("GIF89a\x01\x00\x01\x00"), pb.FileKind_FILE_KIND_IMAGE},
		{"webp", []byte("RIFF\x00\x00\x00\x00WEBPVP8 "), pb.FileKind_FILE_KIND_IMAGE},
		{"amr", []byte("#!AMR\n\x00"), pb.FileKind_FILE_KIND_VOICE},
		{"opus", oggPage("OpusHead"), pb.FileKind_FILE_KIND_VOICE},
		{"vorbis", oggPage("\x01vorbis"), pb.FileKind_FILE_KIND_GENERIC},
		{"ogg cut before its codec", oggPage("OpusHead")[:30], pb.FileKind_FILE_KIND_GENERIC},
		{"m4a", ftyp("M4A "), pb.FileKind_FILE_KIND_VOICE},
		{"mp4", ftyp("mp42"), pb.FileKind_FILE_KIND_VIDEO},
		{"truncated ftyp box", ftyp("mp42")[:9], pb.FileKind_FILE_KIND_GENERIC},
		{"webm", webm, pb.FileKind_FILE_KIND_VIDEO},
		{"matroska", mkv, pb.FileKind_FILE_KIND_GENERIC},
		{"html", []byte("<html><script>alert(1)</script>"), pb.FileKind_FILE_KIND_GENERIC},
		{"svg", []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script/></svg>`),
			pb.FileKind_FILE_KIND_GENERIC},
		{"exe", []byte("MZ\x90\x00"), pb.FileKind_FILE_KIND_GENERIC},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := detectType(tc.head); got.kind != tc.want {
				t.Errorf("got %v (%s), want %v", got.kind, got.mime, tc.want)
			}
		})
	}
}

// TestDescribeImage_Bounds: an image whose decoding would pass the budget
// keeps its dimensions and gets no thumbnail, without being decoded; one
// within it waits for the budget to be free.
func TestDescribeImage_Bounds(t *testing.T) {
	ctx := ctxT(t)
	decodes := semaphore.NewWeighted(decodeBudget)
	w, h, thumb := describeImage(ctx, decodes, bytes.NewReader(pngHeader(20000, 20000)))
	if w != 20000 || h != 20000 || thumb != nil {
		t.Fatalf("got %dx%d with a %d-byte thumbnail, want 20000x20000 and none", w, h, len(thumb))
	}

	img := bytes.NewReader(testPNG(t, 300, 200))
	if !decodes.TryAcquire(decodeBudget) {
		t.Fatal("budget taken")
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, _, thumb := describeImage(short, decodes, img); thumb != nil {
		t.Fatal("decoded while the budget was taken, want it to wait")
	}
	decodes.Release(decodeBudget)
	img.Seek(0, io.SeekStart)
	if _, _, thumb := describeImage(ctx, decodes, img); len(thumb) == 0 {
		t.Fatal("no thumbnail once the budget was free")
	}
}

// TestThumbnail_FitsByBytes: a thumbnail of noise, which JPEG compresses
// worst, still fits the byte bound.
func TestThumbnail_FitsByBytes(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 256, 256))
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range img.Pix {
		img.Pix[i] = byte(rng.Uint32())
	}
	thumb := thumbnail(img)
	if len(thumb) == 0 || len(thumb) > fsm.MaxThumbnail {
		t.Fatalf("got a %d-byte thumbnail of noise, want 1..%d", len(thumb), fsm.MaxThumbnail)
	}
}

// FuzzDetectType feeds hostile content to type detection and thumbnail
// making: neither may panic, only the allow-list's kinds and MIME types
// come out, and a thumbnail stays within its bound.
func FuzzDetectType(f *testing.F) {
	seeds := [][]byte{
		testPNG(f, 3, 3),
		[]byte("GIF89a\xff\xff\xff\xff"),
		[]byte("\xff\xd8\xff\xdb"),
		[]byte("\xff\xd8\xff\xc0\x00\x11\x08\xff\xff\xff\xff\x03\x01\x22\x00"),
		[]byte("RIFF\x00\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00" +
			"\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff"),
		[]byte("#!AMR\n\x3c\x48\xf5\x1f"),
		[]byte("#!AMR-WB\n\x04"),
		oggPage("OpusHead"),
		oggPage("\x01vorbis"),
		oggPage("OpusHead")[:30],
		ftyp("M4A "),
		ftyp("mp42"),
		ftyp("mp42")[:9],
		append([]byte{0xff, 0xff, 0xff, 0xff}, "ftypisom"...),
		webm,
		mkv,
		append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{0xa5}, 64)...),
		pngHeader(20000, 20000),
		pngHeader(0, 1),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	allowed := map[fileType]bool{genericType: true}
	for _, t := range allowedTypes {
		allowed[t.fileType] = true
	}
	decodes := semaphore.NewWeighted(decodeBudget)
	f.Fuzz(func(t *testing.T, b []byte) {
		ft := detectType(b[:min(len(b), sniffLen)])
		if !allowed[ft] {
			t.Fatalf("detected %v %q, which the allow-list does not have", ft.kind, ft.mime)
		}
		if ft.kind != pb.FileKind_FILE_KIND_IMAGE {
			return
		}
		_, _, thumb := describeImage(context.Background(), decodes, bytes.NewReader(b))
		if len(thumb) > fsm.MaxThumbnail {
			t.Fatalf("got a thumbnail of %d bytes", len(thumb))
		}
	})
}
