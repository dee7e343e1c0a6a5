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

	bolt "go.etcd.io/bbolt"

	"github.com/schat/schat/fsm"
	pb "github.com/schat/schat/proto"
)

// An upload takes these steps on the node that receives it:
//
//  1. the session token and the uploader's right are checked: nothing is
//     read from the body before;
//  2. the body is streamed into a spool file (bounded by the size limit)
//     while its SHA-256 is computed;
//  3. the type is detected from its first bytes and, for an image, a
//     thumbnail is made, so that the state machine only copies results;
//  4. a FileBeginCmd, the chunks in order and a FileCommitCmd go through
//     the raft log of the shard that will hold the file;
//  5. the spool file is removed, whatever happened.
//
// A failure after the begin proposes an abort; if even that is lost, the
// shard leader's sweep drops the upload once it has been idle for
// UploadTimeout.

// Upload bounds on the node.
const (
	maxThumbBytes  = fsm.MaxThumbnail
	maxFileName    = 255 // runes of the name an uploader gives
	maxFileID      = 64  // bytes of a file ID in a request
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
	return os.MkdirAll(dir, 0o700)
}

func (n *Node) spoolDir() string { return filepath.Join(n.cfg.DataDir, spoolDirName) }

// serveUpload answers an upload for purpose with the new file's
// description.
func (n *Node) serveUpload(purpose pb.FilePurpose) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		info, err := n.upload(r, purpose)
		if err != nil {
			n.httpFail(w, err)
			return
		}
		writeProtoJSON(w, http.StatusCreated, info)
	}
}

// upload runs the steps above for one request.
func (n *Node) upload(r *http.Request, purpose pb.FilePurpose) (*pb.FileInfo, error) {
	ctx := r.Context()
	uid, err := n.httpUser(ctx, r)
	if err != nil {
		return nil, err
	}
	info, err := n.uploadTarget(ctx, r, uid, purpose)
	if err != nil {
		return nil, err
	}
	if r.ContentLength > n.cfg.Files.MaxSize {
		return nil, tooLarge(n.cfg.Files.MaxSize)
	}
	sp, err := n.spool(http.MaxBytesReader(nil, r.Body, n.cfg.Files.MaxSize))
	if err != nil {
		return nil, err
	}
	defer sp.remove()
	if err := sp.describe(info); err != nil {
		return nil, err
	}
	return n.replicate(ctx, info, sp)
}

func tooLarge(limit int64) error {
	return pb.Errf(pb.Code_TOO_LARGE, "a file may have at most %d bytes", limit)
}

// uploadTarget checks that uid may upload for purpose to the group the
// path names, and returns the new file's description so far.
func (n *Node) uploadTarget(ctx context.Context, r *http.Request, uid uint64,
	purpose pb.FilePurpose) (*pb.FileInfo, error) {
	name := r.URL.Query().Get("name")
	if err := checkText("file name", name, maxFileName, false); err != nil {
		return nil, err
	}
	info := &pb.FileInfo{Name: name, OwnerId: uid, Purpose: purpose}
	var random [16]byte
	rand.Read(random[:])
	if purpose == pb.FilePurpose_FILE_PURPOSE_USER_AVATAR {
		info.FileId = fsm.NewFileID(true, uid, random)
		return info, nil
	}
	gid, err := strconv.ParseUint(r.PathValue("gid"), 10, 64)
	if err != nil || gid == 0 {
		return nil, pb.Errf(pb.Code_BAD_REQUEST, "bad group ID %.30q", r.PathValue("gid"))
	}
	info.GroupId, info.FileId = gid, fsm.NewFileID(false, gid, random)
	if purpose == pb.FilePurpose_FILE_PURPOSE_GROUP_AVATAR {
		g, err := n.group(ctx, nil, gid)
		if err == nil && g.OwnerId != uid {
			err = pb.Errf(pb.Code_PERMISSION_DENIED, "only the owner sets the group's avatar")
		}
		return info, err
	}
	return info, n.requireMember(ctx, gid, uid)
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
// limit or cut short leaves no file behind.
func (n *Node) spool(body io.Reader) (*spooled, error) {
	f, err := os.CreateTemp(n.spoolDir(), "up-*")
	if err != nil {
		return nil, err
	}
	sp := &spooled{f: f}
	h := sha256.New()
	sp.size, err = io.Copy(io.MultiWriter(f, h), body)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		err = tooLarge(mbe.Limit)
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

func (sp *spooled) remove() {
	sp.f.Close()
	os.Remove(sp.f.Name())
}

// describe completes info from the content: size, SHA-256, type and, for
// an image, dimensions and thumbnail.
func (sp *spooled) describe(info *pb.FileInfo) error {
	t := detectType(sp.head)
	info.Size, info.Sha256, info.Kind, info.Mime =
		uint64(sp.size), hex.EncodeToString(sp.sum), t.kind, t.mime
	if t.kind == pb.FileKind_FILE_KIND_IMAGE {
		info.Width, info.Height, info.Thumbnail = describeImage(io.NewSectionReader(sp.f, 0, sp.size))
	}
	if info.Purpose != pb.FilePurpose_FILE_PURPOSE_CHAT && t.kind != pb.FileKind_FILE_KIND_IMAGE {
		return pb.Errf(pb.Code_INVALID_ARGUMENT, "an avatar must be a JPEG, PNG, GIF or WebP image")
	}
	return nil
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
func (n *Node) replicate(ctx context.Context, info *pb.FileInfo, sp *spooled) (*pb.FileInfo, error) {
	shard := n.fileShard(info)
	_, err := n.exec(ctx, nil, shard, &pb.Command{Op: &pb.Command_FileBegin{FileBegin: &pb.FileBeginCmd{
		Info: info, MaxSize: uint64(n.cfg.Files.MaxSize), MaxUploads: uint32(n.cfg.Files.MaxUploads)}}})
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
