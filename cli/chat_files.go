package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// codeFile is a local file that cannot be read or written.
const codeFile = "FILE"

// defaultHTTPPort is the HTTP port a node serves by default, guessed for
// a TCP address when --http is not given.
const defaultHTTPPort = "7480"

// httpBase is the node HTTP address files go through: the --http flag, or
// one derived from the chat address (the same host and port for
// WebSocket, the default HTTP port of the host for TCP).
func httpBase(flag, addr string, useTLS bool) string {
	if flag != "" {
		return flag
	}
	scheme := "http"
	if useTLS || strings.HasPrefix(addr, "wss://") {
		scheme = "https"
	}
	for _, prefix := range []string{"ws://", "wss://"} {
		if rest, ok := strings.CutPrefix(addr, prefix); ok {
			host, _, _ := strings.Cut(rest, "/")
			return scheme + "://" + host
		}
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	return scheme + "://" + net.JoinHostPort(host, defaultHTTPPort)
}

// files is a file client acting for the logged-in session.
func (s *chatSession) files() (*transport.FileClient, error) {
	if s.token == "" {
		return nil, usagef("log in first: files go with the session token")
	}
	fc, err := transport.NewFileClient(s.cfg.http, s.token, s.cfg.tls)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return fc, nil
}

// uploadPath uploads the local file at path for target.
func (s *chatSession) uploadPath(ctx context.Context, target transport.UploadTarget,
	path string) (*pb.FileInfo, error) {
	fc, err := s.files()
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, &clientError{code: codeFile, detail: err.Error()}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return nil, &clientError{code: codeFile, detail: path + " is not a regular file"}
	}
	return fc.Upload(ctx, target, filepath.Base(path), f, st.Size())
}

// beforeChat uploads the file of a file-bearing chat line and puts its ID
// into the message.
func beforeChat(ctx context.Context, s *chatSession, a argv, f *pb.ClientFrame) error {
	req := f.GetSendMessage()
	if req.Type == pb.MessageType_MESSAGE_TYPE_TEXT {
		return nil
	}
	info, err := s.uploadPath(ctx, transport.ChatFile(req.GroupId), a.at(2))
	if err != nil {
		return err
	}
	req.FileId = info.FileId
	return nil
}

// beforeGroupAvatar uploads the image of "g_attr <gid> 4 <path>"; "-"
// removes the avatar.
func beforeGroupAvatar(ctx context.Context, s *chatSession, a argv, f *pb.ClientFrame) error {
	req := f.GetUpdateGroup()
	if req.AvatarFileId == nil || a.from(2) == "-" {
		return nil
	}
	info, err := s.uploadPath(ctx, transport.GroupAvatar(req.GroupId), a.from(2))
	if err != nil {
		return err
	}
	req.AvatarFileId = &info.FileId
	return nil
}

// beforeAvatar uploads the image of "avatar <path>"; "-" removes it.
func beforeAvatar(ctx context.Context, s *chatSession, a argv, f *pb.ClientFrame) error {
	if a.at(0) == "-" {
		return nil
	}
	info, err := s.uploadPath(ctx, transport.UserAvatar(), a.at(0))
	if err != nil {
		return err
	}
	f.GetUpdateProfile().AvatarFileId = &info.FileId
	return nil
}

func parseAvatar(argv) (*pb.ClientFrame, error) {
	none := ""
	return &pb.ClientFrame{Body: &pb.ClientFrame_UpdateProfile{
		UpdateProfile: &pb.UpdateProfileRequest{AvatarFileId: &none}}}, nil
}

// parseFetch checks "fetch <file_id> <path>"; the download runs locally.
func parseFetch(a argv) (*pb.ClientFrame, error) {
	if !strings.Contains(a.at(0), "-") {
		return nil, usagef("file_id looks like 1001-0f3a..., not %q", a.at(0))
	}
	return nil, nil
}

// runFetch downloads a file to a new local file, removed again if the
// download fails.
func runFetch(ctx context.Context, s *chatSession, a argv) (obj, error) {
	fc, err := s.files()
	if err != nil {
		return nil, err
	}
	id, path := a.at(0), a.at(1)
	out, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, &clientError{code: codeFile, detail: err.Error()}
	}
	h, err := fc.Download(ctx, id, out)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	return obj{{"file_id", id}, {"path", path}, {"size", h.Get("Content-Length")},
		{"mime", h.Get("Content-Type")}}, nil
}

// fileFields describes a message's file.
func fileFields(f *pb.FileInfo) obj {
	o := obj{{"file_id", f.FileId}, {"file_name", f.Name}, {"size", f.Size},
		{"mime", f.Mime}}
	if f.Width > 0 {
		o = append(o, kv{"dims", fmt.Sprintf("%dx%d", f.Width, f.Height)})
	}
	return o
}
