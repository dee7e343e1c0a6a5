package node

import (
	"strings"
	"unicode/utf8"

	pb "github.com/schat/schat/proto"
)

// maxClientMsgID bounds a client's message ID, in characters.
const maxClientMsgID = 64

// checkText checks a client-supplied string: valid UTF-8, at most max
// runes, and non-blank when required.
func checkText(field, v string, max int, required bool) error {
	if !utf8.ValidString(v) {
		return pb.Errf(pb.Code_INVALID_ARGUMENT, "%s is not valid UTF-8", field)
	}
	if required && strings.TrimSpace(v) == "" {
		return pb.Errf(pb.Code_INVALID_ARGUMENT, "%s is empty", field)
	}
	if n := utf8.RuneCountInString(v); n > max {
		return pb.Errf(pb.Code_TOO_LONG, "%s is %d characters, the limit is %d", field, n, max)
	}
	return nil
}

// checkLoginName allows letters, digits and . _ - only, so a login name is
// unambiguous to type and to read.
func checkLoginName(v string, max int) error {
	if err := checkText("login name", v, max, true); err != nil {
		return err
	}
	for _, r := range v {
		ok := r == '.' || r == '_' || r == '-' || r >= '0' && r <= '9' ||
			r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if !ok {
			return pb.Errf(pb.Code_INVALID_ARGUMENT,
				"login name may hold only letters, digits and . _ -")
		}
	}
	return nil
}

func (l Limits) checkPassword(field, pw string) error {
	switch {
	case len(pw) < l.MinPassword:
		return pb.Errf(pb.Code_INVALID_ARGUMENT, "%s is shorter than %d bytes",
			field, l.MinPassword)
	case len(pw) > l.MaxPassword:
		return pb.Errf(pb.Code_TOO_LONG, "%s is longer than %d bytes", field, l.MaxPassword)
	}
	return nil
}

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// page clamps a client's page size to the configured bounds.
func (l Limits) page(n uint32) int {
	switch {
	case n == 0:
		return l.DefaultPage
	case int(n) > l.MaxPage:
		return l.MaxPage
	}
	return int(n)
}

func checkGroupID(gid uint64) error {
	if gid == 0 {
		return pb.Errf(pb.Code_BAD_REQUEST, "group_id is required")
	}
	return nil
}

func (l Limits) proto() *pb.Limits {
	return &pb.Limits{MaxName: uint32(l.MaxName), MaxDescription: uint32(l.MaxDescription),
		MaxMessage: uint32(l.MaxMessage), MaxPage: uint32(l.MaxPage),
		RecallWindowMs: l.RecallWindow.Milliseconds(), MaxOwnedGroups: uint32(l.MaxOwnedGroups),
		MaxMembers: uint32(l.MaxMembers)}
}

// limits is what a client learns of the node's bounds at login.
func (n *Node) limits() *pb.Limits {
	l := n.cfg.Limits.proto()
	l.MaxFileSize = uint64(n.cfg.Files.MaxSize)
	l.RetentionMaxAgeMs = n.cfg.Retention.MaxAge.Milliseconds()
	l.RetentionMaxMessages = uint64(n.cfg.Retention.MaxMessages)
	return l
}

// maxMessageBytes bounds the encoded size of one message under l, in the
// binary and in the JSON protocol: its text, sender name, system note
// name, client message ID and file name at six bytes a character (four of
// UTF-8, or a JSON \u escape), and 2 KiB for the numbers, field names and
// the rest of the file's description. A message carries no thumbnail
// bytes, so nothing else in it grows.
func maxMessageBytes(l Limits) int {
	return 6*(l.MaxMessage+2*l.MaxName+maxClientMsgID+maxFileName) + 2<<10
}
