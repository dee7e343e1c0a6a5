package node

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/schat/schat/fsm"
	pb "github.com/schat/schat/proto"
)

// uploadRoutes are the upload endpoints, by what they upload for.
var uploadRoutes = []struct {
	pattern string
	purpose pb.FilePurpose
}{
	{"POST /upload/group/{gid}", pb.FilePurpose_FILE_PURPOSE_CHAT},
	{"POST /upload/avatar", pb.FilePurpose_FILE_PURPOSE_USER_AVATAR},
	{"POST /upload/group-avatar/{gid}", pb.FilePurpose_FILE_PURPOSE_GROUP_AVATAR},
}

// fileRoutes adds the upload and download endpoints to mux.
func (n *Node) fileRoutes(mux *http.ServeMux) {
	for _, u := range uploadRoutes {
		mux.HandleFunc(u.pattern, n.serveUpload(u.purpose))
	}
	mux.HandleFunc("GET /files/{id}", n.serveDownload)
	mux.HandleFunc("GET /files/{id}/thumb", n.serveThumbnail)
	mux.HandleFunc("POST /files/{id}/link", n.serveLink)
}

// bearerToken returns the session token a request carries in its
// Authorization header ("Bearer <token>").
func bearerToken(r *http.Request) (string, error) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" || len(token) > maxToken {
		return "", pb.Errf(pb.Code_UNAUTHENTICATED, "a session token is required")
	}
	return token, nil
}

// httpUser returns the user whose session token the request carries.
func (n *Node) httpUser(ctx context.Context, r *http.Request) (uint64, error) {
	token, err := bearerToken(r)
	if err != nil {
		return 0, err
	}
	return n.tokenUser(ctx, token)
}

// tokenUser returns the user of a live session token.
func (n *Node) tokenUser(ctx context.Context, token string) (uint64, error) {
	u, _, err := n.sessionUser(ctx, nil, tokenHash(token))
	if err != nil {
		return 0, err
	}
	return u.Id, nil
}

// sessionUser returns the user of the live session with token hash hash.
// A session missing here is looked for again after a read barrier, so
// that a login made through another node counts as soon as it was
// acknowledged.
func (n *Node) sessionUser(ctx context.Context, ss *session,
	hash []byte) (*pb.User, *pb.Session, error) {
	var u *pb.User
	var sess *pb.Session
	read := func(tx *bolt.Tx) (err error) {
		if sess, err = fsm.GetSession(tx, hash); err != nil || sess == nil {
			return err
		}
		u, err = fsm.GetUser(tx, sess.UserId)
		return err
	}
	err := n.viewFresh(ctx, ss, metaShard, read, func() bool { return sess == nil })
	if err != nil {
		return nil, nil, err
	}
	if sess == nil || u == nil || sess.ExpiresMs <= time.Now().UnixMilli() {
		return nil, nil, pb.Errf(pb.Code_UNAUTHENTICATED, "session expired or revoked")
	}
	return u, sess, nil
}

// serveDownload sends a file's bytes to a reader it may go to: one with a
// valid signed link, or with a session allowed to see the file.
// http.ServeContent answers Range and conditional requests, after the
// access check.
func (n *Node) serveDownload(w http.ResponseWriter, r *http.Request) {
	acc, err := n.readableFile(r, r.PathValue("id"), r.URL.Query().Has("sig"))
	if err != nil {
		n.httpFail(w, err)
		return
	}
	f, err := n.openBlob(acc.info)
	if err != nil {
		n.httpFail(w, err)
		return
	}
	defer f.Close()
	h := w.Header()
	h.Set("Content-Type", acc.info.Mime)
	h.Set("ETag", `"`+acc.info.Sha256+`"`)
	h.Set("Content-Disposition", disposition(acc.info))
	acc.cacheHeaders(h)
	http.ServeContent(w, r, "", time.UnixMilli(acc.info.CreatedMs), f)
}

// serveThumbnail sends an image's thumbnail to a reader who may see the
// image, by the same rules as serveDownload.
func (n *Node) serveThumbnail(w http.ResponseWriter, r *http.Request) {
	acc, err := n.readableFile(r, r.PathValue("id"), r.URL.Query().Has("sig"))
	if err != nil {
		n.httpFail(w, err)
		return
	}
	thumb, err := n.fileThumbnail(r.Context(), acc.info)
	if err != nil {
		n.httpFail(w, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "image/jpeg")
	h.Set("ETag", `"`+acc.info.Sha256+`-thumb"`)
	h.Set("Content-Disposition", "inline")
	acc.cacheHeaders(h)
	http.ServeContent(w, r, "", time.UnixMilli(acc.info.CreatedMs), bytes.NewReader(thumb))
}

// fileThumbnail reads a file's thumbnail from its shard; NOT_FOUND if it
// has none.
func (n *Node) fileThumbnail(ctx context.Context, info *pb.FileInfo) ([]byte, error) {
	var thumb []byte
	read := func(tx *bolt.Tx) (err error) {
		thumb, err = fsm.GetThumbnail(tx, info.FileId)
		return err
	}
	if err := n.shards[n.fileShard(info)].fsm.View(read); err != nil {
		return nil, err
	}
	if len(thumb) == 0 {
		return nil, pb.Errf(pb.Code_NOT_FOUND, "file %s has no thumbnail", info.FileId)
	}
	return thumb, nil
}

// access is a reader's right to a file: by a signed link until linkExp
// (Unix seconds), or by a session token (linkExp 0).
type access struct {
	info    *pb.FileInfo
	linkExp int64
}

// cacheHeaders says how the answer may be cached. A file is private to
// those who may read it, so no shared cache may keep it. A signed link is
// its own credential and names one content until it expires, so a browser
// may keep the answer that long without asking again. An answer to a
// session token is checked again at every use (no-cache), which the ETag
// makes cheap (304 Not Modified): a reader who has lost access, or whose
// session has ended, stops getting the bytes.
func (acc access) cacheHeaders(h http.Header) {
	h.Set("X-Content-Type-Options", "nosniff")
	if acc.linkExp > 0 {
		left := max(0, acc.linkExp-time.Now().Unix())
		h.Set("Cache-Control", fmt.Sprintf("private, max-age=%d, immutable", left))
		return
	}
	h.Set("Cache-Control", "private, no-cache")
	h.Set("Vary", "Authorization")
}

// disposition shows images, voice and video in place and offers anything
// else as a download, under the uploader's name.
func disposition(info *pb.FileInfo) string {
	kind := "inline"
	if info.Kind == pb.FileKind_FILE_KIND_GENERIC {
		kind = "attachment"
	}
	if info.Name == "" {
		return kind
	}
	if v := mime.FormatMediaType(kind, map[string]string{"filename": info.Name}); v != "" {
		return v
	}
	return kind
}

// readableFile returns file id if the request may read it: by a valid
// signed link when signed, or else by a session token of a member (any
// user, for an avatar).
func (n *Node) readableFile(r *http.Request, id string, signed bool) (access, error) {
	ctx := r.Context()
	if signed {
		exp, err := n.checkLink(id, r.URL.Query())
		if err != nil {
			return access{}, err
		}
		info, err := n.fileInfo(ctx, id)
		return access{info: info, linkExp: exp}, err
	}
	uid, err := n.httpUser(ctx, r)
	if err != nil {
		return access{}, err
	}
	info, err := n.fileInfo(ctx, id)
	if err != nil {
		return access{}, err
	}
	if info.Purpose == pb.FilePurpose_FILE_PURPOSE_CHAT {
		if err := n.requireMember(ctx, info.GroupId, uid); err != nil {
			return access{}, err
		}
	}
	return access{info: info}, nil
}

// fileInfo reads a committed file's description from its shard, looking
// again after a read barrier before answering NOT_FOUND.
func (n *Node) fileInfo(ctx context.Context, id string) (*pb.FileInfo, error) {
	scope, user, _, err := fsm.ParseFileID(id)
	if err != nil {
		return nil, err
	}
	shard := uint32(metaShard)
	if !user {
		shard = n.shardOf(scope)
	}
	var sf *pb.StoredFile
	read := func(tx *bolt.Tx) (err error) {
		sf, err = fsm.GetFile(tx, id)
		return err
	}
	err = n.viewFresh(ctx, nil, shard, read, func() bool { return sf == nil })
	if err == nil && sf == nil {
		err = pb.Errf(pb.Code_NOT_FOUND, "no file %s", id)
	}
	if err != nil {
		return nil, err
	}
	return sf.Info, nil
}

// openBlob opens a file's content on this node. A file deleted since its
// description was read is NOT_FOUND.
func (n *Node) openBlob(info *pb.FileInfo) (*os.File, error) {
	shard := n.fileShard(info)
	path, err := n.shards[shard].fsm.BlobPath(info.Sha256)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, pb.Errf(pb.Code_NOT_FOUND, "no file %s", info.FileId)
	}
	return f, err
}

// serveLink answers a reader allowed to see a file with a signed link to
// it that works without a token until it expires.
func (n *Node) serveLink(w http.ResponseWriter, r *http.Request) {
	acc, err := n.readableFile(r, r.PathValue("id"), false) // a link mints no links
	if err != nil {
		n.httpFail(w, err)
		return
	}
	info := acc.info
	exp := time.Now().Add(n.cfg.Files.URLTTL).Unix()
	q := "?" + url.Values{"exp": {strconv.FormatInt(exp, 10)},
		"sig": {n.linkSig(info.FileId, exp)}}.Encode()
	path := "/files/" + url.PathEscape(info.FileId)
	link := &pb.FileLink{Url: path + q, ExpiresMs: exp * 1000}
	if info.ThumbnailSize > 0 {
		link.ThumbnailUrl = path + "/thumb" + q
	}
	writeProtoJSON(w, http.StatusOK, link)
}

// linkSig is the HMAC-SHA256 of a file ID and expiry under a key derived
// from the cluster secret, which every node holds.
func (n *Node) linkSig(id string, exp int64) string {
	k := hmac.New(sha256.New, n.secret)
	k.Write([]byte("schat file links"))
	m := hmac.New(sha256.New, k.Sum(nil))
	fmt.Fprintf(m, "%s\n%d", id, exp)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkLink refuses a signed link that is malformed, forged or expired,
// and returns its expiry.
func (n *Node) checkLink(id string, q url.Values) (int64, error) {
	exp, err := strconv.ParseInt(q.Get("exp"), 10, 64)
	if err != nil {
		return 0, pb.Errf(pb.Code_UNAUTHENTICATED, "bad link expiry")
	}
	if !hmac.Equal([]byte(q.Get("sig")), []byte(n.linkSig(id, exp))) {
		return 0, pb.Errf(pb.Code_UNAUTHENTICATED, "bad link signature")
	}
	if time.Now().Unix() >= exp {
		return 0, pb.Errf(pb.Code_UNAUTHENTICATED, "link expired")
	}
	return exp, nil
}

// httpStatus maps client codes to HTTP statuses for the file endpoints.
var httpStatus = map[pb.Code]int{
	pb.Code_BAD_REQUEST:       http.StatusBadRequest,
	pb.Code_INVALID_ARGUMENT:  http.StatusBadRequest,
	pb.Code_TOO_LONG:          http.StatusBadRequest,
	pb.Code_UNAUTHENTICATED:   http.StatusUnauthorized,
	pb.Code_PERMISSION_DENIED: http.StatusForbidden,
	pb.Code_NOT_MEMBER:        http.StatusForbidden,
	pb.Code_NOT_FOUND:         http.StatusNotFound,
	pb.Code_TOO_LARGE:         http.StatusRequestEntityTooLarge,
	pb.Code_LIMIT_EXCEEDED:    http.StatusTooManyRequests,
	pb.Code_RATE_LIMITED:      http.StatusTooManyRequests,
	pb.Code_UNAVAILABLE:       http.StatusServiceUnavailable,
	pb.Code_TIMEOUT:           http.StatusGatewayTimeout,
}

// httpFail answers a file request with err's client code as JSON, the
// same Response a chat request would get.
func (n *Node) httpFail(w http.ResponseWriter, err error) {
	resp := (&service{n: n}).fail(err)
	status, ok := httpStatus[resp.Code]
	if !ok {
		status = http.StatusInternalServerError
	}
	writeProtoJSON(w, status, resp)
}

func writeProtoJSON(w http.ResponseWriter, status int, m proto.Message) {
	b, err := protojson.Marshal(m)
	if err != nil {
		http.Error(w, "encode", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}
