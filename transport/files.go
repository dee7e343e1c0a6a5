package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
)

// Files are uploaded and downloaded over a node's HTTP port, with the
// session token of a chat connection:
//
//	POST /upload/group/{gid}?name=N         a chat file for group gid
//	POST /upload/avatar?name=N              the caller's avatar
//	POST /upload/group-avatar/{gid}?name=N  group gid's avatar (owner)
//	GET  /files/{id}                        the bytes (Range works)
//	GET  /files/{id}/thumb                  an image's thumbnail (JPEG)
//	POST /files/{id}/link                   a signed, expiring URL
//
// The GETs take the token, or instead the exp and sig query parameters of
// a signed link. An upload answers with the file's pb.FileInfo; a refusal
// with a pb.Response carrying the code, as JSON. A node refuses an upload
// with LIMIT_EXCEEDED, before reading its body, while it is receiving as
// many uploads as it allows, in all or from the caller.

// UploadTarget says what an upload is for.
type UploadTarget struct{ path string }

// ChatFile is a file to send to group gid.
func ChatFile(gid uint64) UploadTarget {
	return UploadTarget{"/upload/group/" + strconv.FormatUint(gid, 10)}
}

// UserAvatar is the caller's own avatar.
func UserAvatar() UploadTarget { return UploadTarget{"/upload/avatar"} }

// GroupAvatar is group gid's avatar; only its owner may upload one.
func GroupAvatar(gid uint64) UploadTarget {
	return UploadTarget{"/upload/group-avatar/" + strconv.FormatUint(gid, 10)}
}

// FileClient uploads and downloads files for one session. It is safe for
// concurrent use.
type FileClient struct {
	base  *url.URL
	token string
	hc    *http.Client
}

// NewFileClient returns a client for the node whose HTTP port is at base
// ("http://host:port" or "https://..."), acting for the session token.
// tlsCfg, if set, is used for https.
func NewFileClient(base, token string, tlsCfg *tls.Config) (*FileClient, error) {
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: file base URL %q", ErrInvalidConfig, base)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	return &FileClient{base: u, token: token, hc: &http.Client{Transport: tr}}, nil
}

// Upload streams body (size bytes, or -1 if unknown) as a file named name
// for target and returns the stored file's description.
func (fc *FileClient) Upload(ctx context.Context, target UploadTarget, name string,
	body io.Reader, size int64) (*pb.FileInfo, error) {
	u := fc.url(target.path)
	u.RawQuery = url.Values{"name": {name}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), body)
	if err != nil {
		return nil, err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	info := &pb.FileInfo{}
	return info, fc.doJSON(req, info)
}

// Download writes file id's bytes to w and returns the response headers
// (Content-Type, Content-Length, ETag).
func (fc *FileClient) Download(ctx context.Context, id string, w io.Writer) (http.Header, error) {
	resp, err := fc.Get(ctx, id, "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return nil, fmt.Errorf("download %s: %w", id, err)
	}
	return resp.Header, nil
}

// Get requests file id, or the byte range rng of it ("bytes=0-99"; "" for
// all), and returns the response for the caller to read and close. A
// refusal is a *pb.Error.
func (fc *FileClient) Get(ctx context.Context, id, rng string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		fc.url("/files/"+url.PathEscape(id)).String(), nil)
	if err != nil {
		return nil, err
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := fc.send(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		defer resp.Body.Close()
		return nil, refusal(resp)
	}
	return resp, nil
}

// Thumbnail returns the thumbnail of image file id (a JPEG); NOT_FOUND
// when it has none.
func (fc *FileClient) Thumbnail(ctx context.Context, id string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		fc.url("/files/"+url.PathEscape(id)+"/thumb").String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := fc.send(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, refusal(resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxThumbnail+1))
	if err == nil && len(b) > maxThumbnail {
		err = fmt.Errorf("thumbnail of %s: over %d bytes", id, maxThumbnail)
	}
	if err != nil {
		return nil, err
	}
	return b, nil
}

// maxThumbnail bounds a thumbnail read, well above what a server makes.
const maxThumbnail = 64 << 10

// Link returns a signed URL of file id (and of its thumbnail, if it has
// one) that works without a token until it expires, absolute against the
// client's base.
func (fc *FileClient) Link(ctx context.Context, id string) (*pb.FileLink, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		fc.url("/files/"+url.PathEscape(id)+"/link").String(), nil)
	if err != nil {
		return nil, err
	}
	link := &pb.FileLink{}
	if err := fc.doJSON(req, link); err != nil {
		return nil, err
	}
	for _, u := range []*string{&link.Url, &link.ThumbnailUrl} {
		if *u == "" {
			continue
		}
		rel, err := url.Parse(*u)
		if err != nil {
			return nil, fmt.Errorf("link %s: %w", id, err)
		}
		*u = fc.base.ResolveReference(rel).String()
	}
	return link, nil
}

func (fc *FileClient) url(path string) *url.URL {
	u := *fc.base
	u.Path = strings.TrimRight(u.Path, "/") + path
	return &u
}

// send adds the token and sends req.
func (fc *FileClient) send(req *http.Request) (*http.Response, error) {
	req.Header.Set("Authorization", "Bearer "+fc.token)
	return fc.hc.Do(req)
}

// doJSON sends req and decodes a 2xx answer into out.
func (fc *FileClient) doJSON(req *http.Request, out proto.Message) error {
	resp, err := fc.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return refusal(resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxFileJSON))
	if err != nil {
		return err
	}
	return protojson.Unmarshal(b, out)
}

// maxFileJSON bounds a file endpoint's JSON answer.
const maxFileJSON = 1 << 20

// refusal turns a non-2xx answer into a *pb.Error.
func refusal(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxFileJSON))
	var r pb.Response
	if err := protojson.Unmarshal(b, &r); err != nil || r.Code == pb.Code_OK {
		return &pb.Error{Code: pb.Code_INTERNAL, Detail: "HTTP " + resp.Status}
	}
	return &pb.Error{Code: r.Code, Detail: r.Detail}
}

// SendFile posts a message of type t (image, voice, video or file) to
// group gid carrying uploaded file fileID, with an optional caption.
func (c *Client) SendFile(ctx context.Context, gid uint64, t pb.MessageType,
	fileID, caption, clientMsgID string) (*pb.ChatMessage, error) {
	f := &pb.ClientFrame{Body: &pb.ClientFrame_SendMessage{SendMessage: &pb.SendMessageRequest{
		GroupId: gid, Type: t, Text: caption, ClientMsgId: clientMsgID, FileId: fileID,
	}}}
	return body(ctx, c, f, (*pb.Response).GetMessage)
}

// SetAvatar makes uploaded file fileID the caller's avatar ("" removes
// it).
func (c *Client) SetAvatar(ctx context.Context, fileID string) (*pb.UserProfile, error) {
	return c.UpdateProfile(ctx, &pb.UpdateProfileRequest{AvatarFileId: &fileID})
}

// SetGroupAvatar makes uploaded file fileID group gid's avatar ("" removes
// it).
func (c *Client) SetGroupAvatar(ctx context.Context, gid uint64,
	fileID string) (*pb.GroupInfo, error) {
	return c.UpdateGroup(ctx, &pb.UpdateGroupRequest{GroupId: gid, AvatarFileId: &fileID})
}

// MessageTypeOf is the message type that carries a file of kind k.
func MessageTypeOf(k pb.FileKind) pb.MessageType {
	switch k {
	case pb.FileKind_FILE_KIND_IMAGE:
		return pb.MessageType_MESSAGE_TYPE_IMAGE
	case pb.FileKind_FILE_KIND_VOICE:
		return pb.MessageType_MESSAGE_TYPE_VOICE
	case pb.FileKind_FILE_KIND_VIDEO:
		return pb.MessageType_MESSAGE_TYPE_VIDEO
	}
	return pb.MessageType_MESSAGE_TYPE_FILE
}
