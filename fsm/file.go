package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/storage"
)

// ChunkSize is the chunk size of an upload whose FileBeginCmd names none,
// and the one nodes propose; MaxChunkSize bounds what a FileBeginCmd may
// name. A chunk is one command, so the chunk size bounds what one upload
// adds to a raft entry.
const (
	ChunkSize    = 256 << 10
	MaxChunkSize = 1 << 20
)

// Bounds on the description an upload carries. A thumbnail is stored
// apart from the file's record and served on its own, so neither the
// record nor the messages that carry the description hold its bytes.
const (
	MaxThumbnail = 16 << 10
	maxFileName  = 1024
	maxMime      = 128
	maxFileID    = len("u18446744073709551615-") + 32
)

// File IDs name the shard that holds the file: "<group id>-<32 hex>" on
// a group shard, "u<user id>-<32 hex>" for a user avatar on the meta
// shard. The 16 random bytes are chosen by the proposing node.

// NewFileID returns the ID of an upload to group gid, or, when user is
// set, of user uid's avatar.
func NewFileID(user bool, scope uint64, random [16]byte) string {
	p := ""
	if user {
		p = "u"
	}
	return p + strconv.FormatUint(scope, 10) + "-" + hex.EncodeToString(random[:])
}

// ParseFileID splits a file ID into its scope (group or user ID), whether
// it is a user's, and its storage key (the scope followed by the random
// bytes). Only the form NewFileID writes is accepted, so that one file
// has one name.
func ParseFileID(id string) (scope uint64, user bool, key []byte, err error) {
	bad := pb.Errf(pb.Code_INVALID_ARGUMENT, "bad file ID %.80q", id)
	if len(id) > maxFileID {
		return 0, false, nil, bad
	}
	head, tail, ok := strings.Cut(id, "-")
	if user = strings.HasPrefix(head, "u"); user {
		head = head[1:]
	}
	scope, serr := strconv.ParseUint(head, 10, 64)
	raw, herr := hex.DecodeString(tail)
	if !ok || serr != nil || herr != nil || len(raw) != 16 || scope == 0 ||
		NewFileID(user, scope, [16]byte(raw)) != id {
		return 0, false, nil, bad
	}
	return scope, user, append(storage.U64(scope), raw...), nil
}

// fileEffects are the file operations of one applied batch: its chunk
// writes, and what may be removed only once its transaction commits.
type fileEffects struct {
	store    *storage.FileStore
	chunks   *storage.ChunkWriter // the batch's chunk writes, synced before it commits
	partials [][]byte             // upload keys whose partial files go
	zeroed   [][]byte             // SHA-256 sums no file counted at some point
}

func newFileEffects(store *storage.FileStore) *fileEffects {
	return &fileEffects{store: store, chunks: store.NewChunkWriter()}
}

// removeDropped removes the partial files of uploads keys and the contents
// sums that a committed transaction no longer refers to. A failure leaves
// garbage that the next Open collects, never a missing file.
func removeDropped(store *storage.FileStore, keys, sums [][]byte) error {
	var first error
	for _, key := range keys {
		if err := store.RemovePartial(key); err != nil && first == nil {
			first = err
		}
	}
	for _, sum := range sums {
		if err := store.RemoveBlob(sum); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// fileBegin opens an upload after checking who may make it.
func (f *FSM) fileBegin(a *applyCtx, c *pb.FileBeginCmd) (*Result, error) {
	info := c.GetInfo()
	key, err := f.checkBegin(a, c)
	if err != nil {
		return nil, err
	}
	if rec, err := getRecord[pb.StoredFile](a.tx, storage.Files, key); err != nil || rec != nil {
		return &Result{File: rec.GetInfo(), Existing: true}, err
	}
	if up, err := getRecord[pb.Upload](a.tx, storage.Uploads, key); err != nil || up != nil {
		return &Result{File: up.GetInfo(), Existing: true}, err
	}
	if n := a.bucket(storage.Uploads).Stats().KeyN; c.MaxUploads > 0 && n >= int(c.MaxUploads) {
		return nil, pb.Errf(pb.Code_LIMIT_EXCEEDED, "%d uploads in progress", n)
	}

	info = proto.CloneOf(info)
	info.CreatedMs = a.now
	info.ThumbnailSize = uint32(len(c.Thumbnail))
	state, err := sha256.New().(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, err
	}
	up := &pb.Upload{Info: info, HashState: state, UpdatedMs: a.now, ChunkSize: c.ChunkSize}
	if err := storage.Put(a.bucket(storage.Uploads), key, up); err != nil {
		return nil, err
	}
	if len(c.Thumbnail) > 0 {
		if err := a.bucket(storage.Thumbs).Put(key, c.Thumbnail); err != nil {
			return nil, err
		}
	}
	return &Result{File: info}, nil
}

// checkBegin checks an upload's description and its uploader's right to
// make it, and returns its key.
func (f *FSM) checkBegin(a *applyCtx, c *pb.FileBeginCmd) ([]byte, error) {
	info := c.GetInfo()
	scope, user, key, err := ParseFileID(info.GetFileId())
	if err != nil {
		return nil, err
	}
	sum, herr := hex.DecodeString(info.GetSha256())
	switch {
	case user != (info.GetPurpose() == pb.FilePurpose_FILE_PURPOSE_USER_AVATAR),
		user != (f.cfg.Kind == KindMeta),
		user && scope != info.GetOwnerId(), !user && scope != info.GetGroupId():
		return nil, pb.Errf(pb.Code_INVALID_ARGUMENT, "file ID %s does not fit its purpose",
			info.GetFileId())
	case info.GetSize() == 0:
		return nil, pb.Errf(pb.Code_INVALID_ARGUMENT, "empty file")
	case c.MaxSize > 0 && info.GetSize() > c.MaxSize:
		return nil, pb.Errf(pb.Code_TOO_LARGE, "file of %d bytes, limit %d",
			info.GetSize(), c.MaxSize)
	case herr != nil || len(sum) != sha256.Size:
		return nil, pb.Errf(pb.Code_INVALID_ARGUMENT, "bad SHA-256")
	case len(info.GetName()) > maxFileName || len(info.GetMime()) > maxMime ||
		len(c.Thumbnail) > MaxThumbnail:
		return nil, pb.Errf(pb.Code_TOO_LONG, "file description too long")
	case c.ChunkSize > MaxChunkSize:
		return nil, pb.Errf(pb.Code_INVALID_ARGUMENT, "chunk size %d over %d",
			c.ChunkSize, MaxChunkSize)
	case len(c.Thumbnail) > 0 && info.GetKind() != pb.FileKind_FILE_KIND_IMAGE:
		return nil, pb.Errf(pb.Code_INVALID_ARGUMENT, "a thumbnail for a %s", info.GetKind())
	}
	return key, checkUploader(a, info)
}

// checkUploader applies who may upload: the user for their avatar, a
// member for a chat file, the owner for a group avatar.
func checkUploader(a *applyCtx, info *pb.FileInfo) error {
	if info.Purpose == pb.FilePurpose_FILE_PURPOSE_USER_AVATAR {
		_, err := loadUser(a, info.OwnerId)
		return err
	}
	g, err := loadGroup(a, info.GroupId)
	if err != nil {
		return err
	}
	if info.Purpose == pb.FilePurpose_FILE_PURPOSE_GROUP_AVATAR {
		return requireOwner(g, info.OwnerId)
	}
	_, err = loadMember(a, g.Id, info.OwnerId)
	return err
}

// fileChunk writes the next chunk of an upload.
func (f *FSM) fileChunk(a *applyCtx, c *pb.FileChunkCmd) (*Result, error) {
	key, up, err := loadUpload(a, c.FileId)
	if err != nil {
		return nil, err
	}
	want := min(chunkSize(up), up.Info.Size-up.Received)
	switch {
	case c.Index != up.NextChunk:
		return nil, pb.Errf(pb.Code_INVALID_ARGUMENT, "chunk %d out of order: want %d",
			c.Index, up.NextChunk)
	case uint64(len(c.Data)) != want:
		return nil, pb.Errf(pb.Code_INVALID_ARGUMENT, "chunk %d has %d bytes: want %d",
			c.Index, len(c.Data), want)
	}

	if err := a.fx.chunks.Write(key, int64(up.Received), c.Data); err != nil {
		return nil, err
	}
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(up.HashState); err != nil {
		return nil, fmt.Errorf("upload %s: hash state: %w", c.FileId, err)
	}
	h.Write(c.Data)
	if up.HashState, err = h.(encoding.BinaryMarshaler).MarshalBinary(); err != nil {
		return nil, err
	}
	up.Received += uint64(len(c.Data))
	up.NextChunk++
	up.UpdatedMs = a.now
	return &Result{}, storage.Put(a.bucket(storage.Uploads), key, up)
}

// chunkSize is the size of an upload's chunks but the last.
func chunkSize(up *pb.Upload) uint64 {
	if up.ChunkSize == 0 {
		return ChunkSize
	}
	return uint64(up.ChunkSize)
}

// loadUpload returns an upload in progress, or NOT_FOUND.
func loadUpload(a *applyCtx, id string) ([]byte, *pb.Upload, error) {
	_, _, key, err := ParseFileID(id)
	if err != nil {
		return nil, nil, err
	}
	up, err := getRecord[pb.Upload](a.tx, storage.Uploads, key)
	if err == nil && up == nil {
		err = pb.Errf(pb.Code_NOT_FOUND, "no upload %s in progress", id)
	}
	return key, up, err
}

// fileCommit turns a complete upload whose SHA-256 checks into a file. A
// mismatch drops the upload: unlike other refusals, it writes.
func (f *FSM) fileCommit(a *applyCtx, c *pb.FileCommitCmd) (*Result, error) {
	key, up, err := loadUpload(a, c.FileId)
	if err != nil {
		return nil, err
	}
	if up.Received != up.Info.Size {
		return nil, pb.Errf(pb.Code_INVALID_ARGUMENT, "upload %s has %d of %d bytes",
			c.FileId, up.Received, up.Info.Size)
	}
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(up.HashState); err != nil {
		return nil, fmt.Errorf("upload %s: hash state: %w", c.FileId, err)
	}
	sum := h.Sum(nil)
	if hex.EncodeToString(sum) != up.Info.Sha256 {
		if err := dropUpload(a, key); err != nil {
			return nil, err
		}
		return &Result{Code: pb.Code_INVALID_ARGUMENT,
			Detail: "upload " + c.FileId + " does not match its SHA-256"}, nil
	}

	// The content is linked durably before the transaction that records
	// it commits; a crash in between replays this entry, which links again.
	if err := a.fx.store.LinkBlob(key, sum); err != nil {
		return nil, err
	}
	if err := countBlob(a, sum, +1); err != nil {
		return nil, err
	}
	if err := closeUpload(a, key); err != nil {
		return nil, err
	}
	rec := &pb.StoredFile{Info: up.Info}
	if err := storage.Put(a.bucket(storage.Files), key, rec); err != nil {
		return nil, err
	}
	return &Result{File: up.Info}, nil
}

// closeUpload deletes an upload's record; its partial file goes after the
// commit.
func closeUpload(a *applyCtx, key []byte) error {
	a.fx.partials = append(a.fx.partials, key)
	return a.bucket(storage.Uploads).Delete(key)
}

// dropUpload deletes an upload that will not become a file, with its
// thumbnail.
func dropUpload(a *applyCtx, key []byte) error {
	if err := a.bucket(storage.Thumbs).Delete(key); err != nil {
		return err
	}
	return closeUpload(a, key)
}

// countBlob adds delta to the number of files with content sum, dropping
// the count at zero; the bytes then go after the commit.
func countBlob(a *applyCtx, sum []byte, delta int) error {
	b := a.bucket(storage.Blobs)
	n := int64(0)
	if v := b.Get(sum); len(v) == 8 {
		n = int64(storage.ReadU64(v, 0))
	}
	n += int64(delta)
	if n > 0 {
		return b.Put(sum, storage.U64(uint64(n)))
	}
	a.fx.zeroed = append(a.fx.zeroed, bytes.Clone(sum))
	return b.Delete(sum)
}

// fileAbort drops an upload in progress.
func (f *FSM) fileAbort(a *applyCtx, c *pb.FileAbortCmd) (*Result, error) {
	key, _, err := loadUpload(a, c.FileId)
	if err != nil {
		return nil, err
	}
	return &Result{}, dropUpload(a, key)
}

// fileSweep drops uploads idle past the timeout and files nobody referred
// to within the unclaimed time of their upload. It reads every file
// record: the cost grows with the number of files, and nodes propose it
// only when FileWork finds something to drop.
func (f *FSM) fileSweep(a *applyCtx, c *pb.FileSweepCmd) (*Result, error) {
	ups, err := scanKeyed[pb.Upload](a.tx, storage.Uploads, nil)
	if err != nil {
		return nil, err
	}
	for _, u := range ups {
		if u.rec.UpdatedMs < a.now-c.UploadTimeoutMs {
			if err := dropUpload(a, u.key); err != nil {
				return nil, err
			}
		}
	}
	files, err := scanKeyed[pb.StoredFile](a.tx, storage.Files, nil)
	if err != nil {
		return nil, err
	}
	for _, sf := range files {
		if !sf.rec.Claimed && sf.rec.Info.CreatedMs < a.now-c.UnclaimedMs {
			if err := dropFile(a, sf.key, sf.rec); err != nil {
				return nil, err
			}
		}
	}
	return &Result{}, nil
}

// dropFile deletes a file record and its thumbnail and uncounts its
// content.
func dropFile(a *applyCtx, key []byte, rec *pb.StoredFile) error {
	if err := a.bucket(storage.Files).Delete(key); err != nil {
		return err
	}
	if err := a.bucket(storage.Thumbs).Delete(key); err != nil {
		return err
	}
	sum, err := hex.DecodeString(rec.Info.Sha256)
	if err != nil {
		return fmt.Errorf("file %s: %w", rec.Info.FileId, err)
	}
	return countBlob(a, sum, -1)
}

// claimFile counts one more reference to file id after check accepts it,
// and returns its description.
func claimFile(a *applyCtx, id string, check func(*pb.FileInfo) error) (*pb.FileInfo, error) {
	_, _, key, err := ParseFileID(id)
	if err != nil {
		return nil, err
	}
	rec, err := getRecord[pb.StoredFile](a.tx, storage.Files, key)
	if err == nil && rec == nil {
		err = pb.Errf(pb.Code_NOT_FOUND, "no file %s", id)
	}
	if err != nil {
		return nil, err
	}
	if err := check(rec.Info); err != nil {
		return nil, err
	}
	rec.Refs++
	rec.Claimed = true
	return rec.Info, storage.Put(a.bucket(storage.Files), key, rec)
}

// releaseFile counts one reference to file id less, deleting the file at
// none. A file already gone is ignored.
func releaseFile(a *applyCtx, id string) error {
	if id == "" {
		return nil
	}
	_, _, key, err := ParseFileID(id)
	if err != nil {
		return nil
	}
	rec, err := getRecord[pb.StoredFile](a.tx, storage.Files, key)
	if err != nil || rec == nil {
		return err
	}
	if rec.Refs > 1 {
		rec.Refs--
		return storage.Put(a.bucket(storage.Files), key, rec)
	}
	return dropFile(a, key, rec)
}

// setAvatar points *slot at file id (or nowhere for ""), claiming the new
// file after check accepts it and releasing the old one. Nothing is
// written when check refuses.
func setAvatar(a *applyCtx, slot *string, id string, check func(*pb.FileInfo) error) error {
	if id == *slot {
		return nil
	}
	if id != "" {
		if _, err := claimFile(a, id, check); err != nil {
			return err
		}
	}
	old := *slot
	*slot = id
	return releaseFile(a, old)
}

// fileMessageKinds says which detected kind each file-bearing message
// type needs; a file message takes any.
var fileMessageKinds = map[pb.MessageType]pb.FileKind{
	pb.MessageType_MESSAGE_TYPE_IMAGE: pb.FileKind_FILE_KIND_IMAGE,
	pb.MessageType_MESSAGE_TYPE_VOICE: pb.FileKind_FILE_KIND_VOICE,
	pb.MessageType_MESSAGE_TYPE_VIDEO: pb.FileKind_FILE_KIND_VIDEO,
}

// checkAttachment accepts a chat file the sender uploaded to group gid
// whose kind suits message type t.
func checkAttachment(gid, sender uint64, t pb.MessageType) func(*pb.FileInfo) error {
	return func(info *pb.FileInfo) error {
		want, typed := fileMessageKinds[t]
		switch {
		case info.Purpose != pb.FilePurpose_FILE_PURPOSE_CHAT || info.GroupId != gid:
			return pb.Errf(pb.Code_PERMISSION_DENIED, "file %s is not a file of group %d",
				info.FileId, gid)
		case info.OwnerId != sender:
			return pb.Errf(pb.Code_PERMISSION_DENIED, "file %s was uploaded by another user",
				info.FileId)
		case typed && info.Kind != want:
			return pb.Errf(pb.Code_INVALID_ARGUMENT, "file %s is %s, not for a %s message",
				info.FileId, info.Kind, t)
		}
		return nil
	}
}

// keyed is a record with its key.
type keyed[P any] struct {
	key []byte
	rec P
}

// scanKeyed decodes every record of bucket whose key starts with prefix.
func scanKeyed[T any, P record[T]](tx *bolt.Tx, bucket, prefix []byte) ([]keyed[P], error) {
	var out []keyed[P]
	c := tx.Bucket(bucket).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		m, err := decode[T, P](k, v)
		if err != nil {
			return nil, err
		}
		out = append(out, keyed[P]{bytes.Clone(k), m})
	}
	return out, nil
}

// GetFile returns the committed file id, or nil. A file of a group that
// is gone (dissolved, its files not yet removed) is nil too.
func GetFile(tx *bolt.Tx, id string) (*pb.StoredFile, error) {
	scope, user, key, err := ParseFileID(id)
	if err != nil {
		return nil, err
	}
	if !user && tx.Bucket(storage.Groups).Get(storage.U64(scope)) == nil {
		return nil, nil
	}
	return getRecord[pb.StoredFile](tx, storage.Files, key)
}

// GetThumbnail returns the thumbnail of committed file id, or nil.
func GetThumbnail(tx *bolt.Tx, id string) ([]byte, error) {
	_, _, key, err := ParseFileID(id)
	if err != nil || tx.Bucket(storage.Files).Get(key) == nil {
		return nil, err
	}
	return bytes.Clone(tx.Bucket(storage.Thumbs).Get(key)), nil
}

// FileWork reports whether a sweep at nowMs with the given times would
// drop anything, so that a node proposes one only then.
func FileWork(tx *bolt.Tx, nowMs int64, c *pb.FileSweepCmd) (bool, error) {
	ups, err := scanKeyed[pb.Upload](tx, storage.Uploads, nil)
	if err != nil {
		return false, err
	}
	for _, u := range ups {
		if u.rec.UpdatedMs < nowMs-c.UploadTimeoutMs {
			return true, nil
		}
	}
	files, err := scanKeyed[pb.StoredFile](tx, storage.Files, nil)
	for _, sf := range files {
		if !sf.rec.Claimed && sf.rec.Info.CreatedMs < nowMs-c.UnclaimedMs {
			return true, err
		}
	}
	return false, err
}

// checkAvatar accepts a file uploaded for purpose by uploader, to group
// gid for a group avatar.
func checkAvatar(purpose pb.FilePurpose, gid, uploader uint64) func(*pb.FileInfo) error {
	return func(info *pb.FileInfo) error {
		switch {
		case info.Purpose != purpose || info.GroupId != gid || info.OwnerId != uploader:
			return pb.Errf(pb.Code_PERMISSION_DENIED, "file %s is not an avatar upload of yours",
				info.FileId)
		case info.Kind != pb.FileKind_FILE_KIND_IMAGE:
			return pb.Errf(pb.Code_INVALID_ARGUMENT, "an avatar must be an image, not %s",
				info.Kind)
		}
		return nil
	}
}
