package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sync/semaphore"

	"github.com/schat/schat/fsm"
	pb "github.com/schat/schat/proto"
)

// An upload takes these steps on the node that receives it:
//
//  1. the request is parsed and the session token and the uploader's
//     right are checked, and the upload takes one of this node's spool
//     slots (MaxSpools in all, MaxUserSpools per user): nothing is read
//     from the body before;
//  2. the body is streamed into a spool file (bounded by the size limit,
//     and ended when it sends nothing for BodyIdle) while its SHA-256 is
//     computed;
//  3. the type is detected from its first bytes and, for an image, a
//     thumbnail is made, so that the state machine only copies results;
//  4. a FileBeginCmd, the chunks in order and a FileCommitCmd go through
//     the raft log of the shard that will hold the file;
//  5. the spool file is removed and the slot freed, whatever happened.
//
// A failure after the begin proposes an abort; if even that is lost, the
// shard leader's sweep drops the upload once it has been idle for
// UploadTimeout.

// Upload bounds on the node.
const (
	maxFileName    = 255 // runes of the name an uploader gives
	maxFileID      = 64  // bytes of a file ID in a request
	maxToken       = 256 // bytes of a session token in a request
	chunksInFlight = 4   // chunks proposed ahead of their commit
	spoolDirName   = "uploads"
)

// openFiles prepares the spool directory, emptying what a previous run
// left there.
func (n *Node) openFiles() error {
	dir := n.spoolDir()
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("node: spool: %w", err)
	}
	n.spools = newSpoolLimits(n.cfg.Files.MaxSpools, n.cfg.Files.MaxUserSpools)
	n.decodes = semaphore.NewWeighted(decodeBudget)
	return os.MkdirAll(dir, 0o700)
}

func (n *Node) spoolDir() string { return filepath.Join(n.cfg.DataDir, spoolDirName) }

// serveUpload answers an upload for purpose with the new file's
// description. A refusal closes the connection: the server would
// otherwise read what is left of the body before answering.
func (n *Node) serveUpload(purpose pb.FilePurpose) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		info, err := n.upload(w, r, purpose)
		if err != nil {
			w.Header().Set("Connection", "close")
			n.httpFail(w, err)
			return
		}
		writeProtoJSON(w, http.StatusCreated, info)
	}
}

// uploadRequest is what an upload request says before its body, checked
// for form only.
type uploadRequest struct {
	token string
	name  string
	gid   uint64 // 0 for a user's avatar
}

// parseUpload reads an upload request's token, file name and group, and
// refuses one that announces more than maxSize bytes.
func parseUpload(r *http.Request, purpose pb.FilePurpose, maxSize int64) (uploadRequest, error) {
	var u uploadRequest
	var err error
	if u.token, err = bearerToken(r); err != nil {
		return u, err
	}
	u.name = r.URL.Query().Get("name")
	if err := checkText("file name", u.name, maxFileName, false); err != nil {
		return u, err
	}
	if purpose != pb.FilePurpose_FILE_PURPOSE_USER_AVATAR {
		u.gid, err = strconv.ParseUint(r.PathValue("gid"), 10, 64)
		if err != nil || u.gid == 0 {
			return u, pb.Errf(pb.Code_BAD_REQUEST, "bad group ID %.30q", r.PathValue("gid"))
		}
	}
	if r.ContentLength > maxSize {
		return u, tooLarge(maxSize)
	}
	return u, nil
}

// upload runs the steps above for one request.
func (n *Node) upload(w http.ResponseWriter, r *http.Request,
	purpose pb.FilePurpose) (*pb.FileInfo, error) {
	ctx := r.Context()
	req, err := parseUpload(r, purpose, n.cfg.Files.MaxSize)
	if err != nil {
		return nil, err
	}
	uid, err := n.tokenUser(ctx, req.token)
	if err != nil {
		return nil, err
	}
	info, err := n.uploadTarget(ctx, req, uid, purpose)
	if err != nil {
		return nil, err
	}
	release, err := n.spools.acquire(uid)
	if err != nil {
		return nil, err
	}
	defer release()

	sp, err := n.spool(w, r.Body)
	if err != nil {
		return nil, err
	}
	defer sp.remove()
	thumb, err := n.describe(ctx, sp, info)
	if err != nil {
		return nil, err
	}
	return n.replicate(ctx, info, thumb, sp)
}

func tooLarge(limit int64) error {
	return pb.Errf(pb.Code_TOO_LARGE, "a file may have at most %d bytes", limit)
}

// uploadTarget checks that uid may upload for purpose to the group the
// request names, and returns the new file's description so far.
func (n *Node) uploadTarget(ctx context.Context, req uploadRequest, uid uint64,
	purpose pb.FilePurpose) (*pb.FileInfo, error) {
	info := &pb.FileInfo{Name: req.name, OwnerId: uid, Purpose: purpose}
	var random [16]byte
	rand.Read(random[:])
	if purpose == pb.FilePurpose_FILE_PURPOSE_USER_AVATAR {
		info.FileId = fsm.NewFileID(true, uid, random)
		return info, nil
	}
	info.GroupId, info.FileId = req.gid, fsm.NewFileID(false, req.gid, random)
	if purpose == pb.FilePurpose_FILE_PURPOSE_GROUP_AVATAR {
		g, err := n.group(ctx, nil, req.gid)
		if err == nil && g.OwnerId != uid {
			err = pb.Errf(pb.Code_PERMISSION_DENIED, "only the owner sets the group's avatar")
		}
		return info, err
	}
	return info, n.requireMember(ctx, req.gid, uid)
}

// spoolLimits counts the uploads this node is receiving, in all and per
// user, and refuses one more beyond either bound.
type spoolLimits struct {
	max, maxUser int

	mu     sync.Mutex
	total  int
	byUser map[uint64]int
}

func newSpoolLimits(max, maxUser int) *spoolLimits {
	return &spoolLimits{max: max, maxUser: maxUser, byUser: make(map[uint64]int)}
}

// acquire takes a slot for user uid, or refuses with LIMIT_EXCEEDED; the
// caller calls release once the upload is over.
func (l *spoolLimits) acquire(uid uint64) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.total >= l.max:
		return nil, pb.Errf(pb.Code_LIMIT_EXCEEDED,
			"this node is receiving %d uploads already: try again shortly", l.total)
	case l.byUser[uid] >= l.maxUser:
		return nil, pb.Errf(pb.Code_LIMIT_EXCEEDED,
			"%d uploads of yours are in progress already", l.byUser[uid])
	}
	l.total++
	l.byUser[uid]++
	var once sync.Once
	return func() { once.Do(func() { l.release(uid) }) }, nil
}

func (l *spoolLimits) release(uid uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byUser[uid]--; l.byUser[uid] == 0 {
		delete(l.byUser, uid)
	}
}

// inUse reports how many slots are taken.
func (l *spoolLimits) inUse() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// requireMember refuses a user who is not a member of group gid, looking
// again after a read barrier before refusing.
func (n *Node) requireMember(ctx context.Context, gid, uid uint64) error {
	shard := n.shardOf(gid)
	var m *pb.Member
	read := func(tx *bolt.Tx) (err error) {
		m, err = fsm.GetMember(tx, gid, uid)
		return err
	}
	err := n.viewFresh(ctx, nil, shard, read, func() bool { return m == nil })
	if err == nil && m == nil {
		err = pb.Errf(pb.Code_NOT_MEMBER, "not a member of group %d", gid)
	}
	return err
}

// spooled is an upload's body on local disk.
type spooled struct {
	f    *os.File
	size int64
	sum  []byte
	head []byte // the first sniffLen bytes
}

// spool copies body into a new spool file, hashing it. A body over the
// limit, cut short or idle for BodyIdle leaves no file behind.
func (n *Node) spool(w http.ResponseWriter, body io.Reader) (*spooled, error) {
	f, err := os.CreateTemp(n.spoolDir(), "up-*")
	if err != nil {
		return nil, err
	}
	sp := &spooled{f: f}
	rc := http.NewResponseController(w)
	body = &idleReader{r: http.MaxBytesReader(w, io.NopCloser(body), n.cfg.Files.MaxSize),
		rc: rc, idle: n.cfg.Files.BodyIdle}
	h := sha256.New()
	sp.size, err = io.Copy(io.MultiWriter(f, h), body)
	rc.SetReadDeadline(time.Time{}) // the rest of the request is not the client's to stall
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		err = tooLarge(mbe.Limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = pb.Errf(pb.Code_BAD_REQUEST, "upload sent nothing for %s after %d bytes",
			n.cfg.Files.BodyIdle, sp.size)
	case err != nil:
		err = pb.Errf(pb.Code_BAD_REQUEST, "upload cut short after %d bytes", sp.size)
	case sp.size == 0:
		err = pb.Errf(pb.Code_INVALID_ARGUMENT, "empty file")
	}
	if err == nil {
		sp.sum = h.Sum(nil)
		sp.head = make([]byte, min(sp.size, sniffLen))
		_, err = f.ReadAt(sp.head, 0)
	}
	if err != nil {
		sp.remove()
		return nil, err
	}
	return sp, nil
}

// idleReader ends a body that sends nothing for idle: every read renews
// the connection's read deadline first.
type idleReader struct {
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration
}

func (ir *idleReader) Read(p []byte) (int, error) {
	err := ir.rc.SetReadDeadline(time.Now().Add(ir.idle))
	if err != nil && !errors.Is(err, http.ErrNotSupported) {
		return 0, err
	}
	return ir.r.Read(p)
}

func (sp *spooled) remove() {
	sp.f.Close()
	os.Remove(sp.f.Name())
}

// describe completes info from the content: size, SHA-256, type and, for
// an image, dimensions; it returns the image's thumbnail, if it has one.
func (n *Node) describe(ctx context.Context, sp *spooled, info *pb.FileInfo) ([]byte, error) {
	t := detectType(sp.head)
	info.Size, info.Sha256, info.Kind, info.Mime =
		uint64(sp.size), hex.EncodeToString(sp.sum), t.kind, t.mime
	if info.Purpose != pb.FilePurpose_FILE_PURPOSE_CHAT && t.kind != pb.FileKind_FILE_KIND_IMAGE {
		return nil, pb.Errf(pb.Code_INVALID_ARGUMENT,
			"an avatar must be a JPEG, PNG, GIF or WebP image")
	}
	var thumb []byte
	if t.kind == pb.FileKind_FILE_KIND_IMAGE {
		info.Width, info.Height, thumb = describeImage(ctx, n.decodes,
			io.NewSectionReader(sp.f, 0, sp.size))
	}
	return thumb, nil
}

// fileShard is the shard that holds a file: the meta shard for a user's
// avatar, the group's shard otherwise.
func (n *Node) fileShard(info *pb.FileInfo) uint32 {
	if info.Purpose == pb.FilePurpose_FILE_PURPOSE_USER_AVATAR {
		return metaShard
	}
	return n.shardOf(info.GroupId)
}

// replicate proposes the upload through the file's shard and returns the
// committed file's description.
func (n *Node) replicate(ctx context.Context, info *pb.FileInfo, thumb []byte,
	sp *spooled) (*pb.FileInfo, error) {
	shard := n.fileShard(info)
	_, err := n.exec(ctx, nil, shard, &pb.Command{Op: &pb.Command_FileBegin{
		FileBegin: &pb.FileBeginCmd{Info: info, MaxSize: uint64(n.cfg.Files.MaxSize),
			MaxUploads: uint32(n.cfg.Files.MaxUploads), ChunkSize: fsm.ChunkSize,
			Thumbnail: thumb}}})
	if err != nil {
		return nil, err
	}
	if err := n.proposeChunks(ctx, shard, info.FileId, sp.f); err != nil {
		n.abortUpload(shard, info.FileId)
		return nil, err
	}
	res, err := n.exec(ctx, nil, shard, &pb.Command{Op: &pb.Command_FileCommit{
		FileCommit: &pb.FileCommitCmd{FileId: info.FileId}}})
	if err != nil {
		n.abortUpload(shard, info.FileId)
		return nil, err
	}
	return res.File, nil
}

// proposeChunks proposes the spool file's chunks in order, keeping a few
// in flight, so that at most chunksInFlight chunks are in memory.
func (n *Node) proposeChunks(ctx context.Context, shard uint32, id string, f *os.File) error {
	buf := make([]byte, fsm.ChunkSize)
	var flight []*proposal
	for i := uint32(0); ; i++ {
		k, err := f.ReadAt(buf, int64(i)*fsm.ChunkSize)
		if k == 0 {
			if err != nil && err != io.EOF {
				return err
			}
			break
		}
		flight = append(flight, n.submit(shard, &pb.Command{Op: &pb.Command_FileChunk{
			FileChunk: &pb.FileChunkCmd{FileId: id, Index: i, Data: buf[:k]}}}))
		if len(flight) == chunksInFlight {
			if _, err := n.finish(ctx, nil, shard, flight[0]); err != nil {
				return err
			}
			flight = flight[1:]
		}
	}
	for _, pr := range flight {
		if _, err := n.finish(ctx, nil, shard, pr); err != nil {
			return err
		}
	}
	return nil
}

// abortUpload proposes dropping an upload that failed. It is best
// effort: the sweep drops what it misses.
func (n *Node) abortUpload(shard uint32, id string) {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ApplyTimeout)
	defer cancel()
	_, err := n.exec(ctx, nil, shard, &pb.Command{Op: &pb.Command_FileAbort{
		FileAbort: &pb.FileAbortCmd{FileId: id}}})
	if err != nil {
		n.log.Warn("abort upload", "shard", shard, "err", err)
	}
}
