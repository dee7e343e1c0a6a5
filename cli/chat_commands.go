package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
)

// command is one word of the chat client's language. v1's words keep
// their argument order so that its command-line demo still reads true.
type command struct {
	name  string // the word typed
	label string // v1's words at the start of the result line; "" = name
	args  string // argument synopsis, for help and usage errors
	help  string
	min   int // fewest arguments
	max   int // most arguments; -1: no limit (the last one takes the rest)
	// retry: the request lands once however often it is sent (a read, or
	// a write carrying a client-chosen ID), so it is sent again when its
	// outcome is unknown.
	retry bool

	// parse builds the request from the arguments, whose count is already
	// within min and max. Local commands (help, exit) have none.
	parse func(a argv) (*pb.ClientFrame, error)
	// prepare, if set, completes the request from the session's state.
	prepare func(s *chatSession, a argv, f *pb.ClientFrame) error
	// before, if set, runs within the command's time before the request
	// is sent: it uploads the files the request refers to.
	before func(ctx context.Context, s *chatSession, a argv, f *pb.ClientFrame) error
	// run, if set, does the whole command locally (a download) instead of
	// sending a request.
	run func(ctx context.Context, s *chatSession, a argv) (obj, error)
	// show turns an OK response into result fields. It runs on the command
	// loop and may send follow-up requests within ctx.
	show func(ctx context.Context, s *chatSession, f *pb.ClientFrame,
		r *pb.Response) (obj, error)
}

// chatCommands lists every command in the order help shows them.
var chatCommands = []*command{
	{name: "reg", args: "<name> <pass> <display_name> <sex:1|2> <location> [description...]",
		help: "register an account", min: 5, max: -1, parse: parseReg, show: showReg},
	{name: "login", args: "<name> <pass> [device]", help: "log in", min: 2, max: 3,
		parse: parseLogin, show: showLogin},
	{name: "logout", help: "log out, keeping the connection", parse: parseLogout,
		show: showLogout},
	{name: "ping", help: "measure the round trip to the server", parse: parsePing,
		show: showPing, retry: true},
	{name: "create", label: "create group", args: "<group_name> <group_pass|-> [description...]",
		help: "create a group (\"-\": no join password)", min: 2, max: -1,
		parse: parseCreate, show: showGroup, retry: true},
	{name: "apply", label: "apply group", args: "<group_id> <group_pass|-> [apply_msg...]",
		help: "ask to join a group", min: 2, max: -1, parse: parseApply, show: showApply},
	{name: "audit", args: "<group_id> [grp_name] <apply_uid> <0|1>",
		help: "answer an application: 1 approve, 0 reject", min: 3, max: 4,
		parse: parseAudit, show: showAudit},
	{name: "quit", args: "<group_id>", help: "leave a group", min: 1, max: 1,
		parse: parseQuit, show: showRequestIDs},
	{name: "kick", args: "<group_id> <member_id>", help: "remove a member (owner only)",
		min: 2, max: 2, parse: parseKick, show: showRequestIDs},
	{name: "chat", args: "<chat_type> <group_id> <msg...|path [caption...]>",
		help: "send a message: chat_type 0 text; 1 image, 2 voice, 3 video, 4 any file " +
			"uploads the file at path", min: 3, max: -1,
		parse: parseChat, before: beforeChat, show: showSent, retry: true},
	{name: "his", args: "<group_id> [now_msg_id] [count]",
		help: "messages before now_msg_id, oldest first (0: up to your read cursor; " +
			"none: the newest)", min: 1, max: 3, parse: parseHistory, show: showPage,
		retry: true},
	{name: "grp_info", args: "<group_id>", help: "describe a group", min: 1, max: 1,
		parse: parseGroupInfo, show: showGroup, retry: true},
	{name: "u_prof", args: "[uid...]", help: "user profiles (no uid: yourself)",
		max: -1, parse: parseProfiles, prepare: prepareProfiles, show: showProfiles,
		retry: true},
	{name: "g_ground", args: "[start_index]", help: "public groups, a page per call, " +
		"going on where the last ended (from the start after the last page); a negative " +
		"start_index starts over", max: 1,
		parse: parseGround, prepare: prepareGround, show: showGround, retry: true},
	{name: "g_attr", args: "<group_id> <attr_id> [value...]", help: "change a group: " +
		"0 public, 1 private, 2 description, 3 name, 4 avatar, 5 join password (\"-\" clears)",
		min: 2, max: -1, parse: parseGroupAttr, before: beforeGroupAvatar, show: showGroup},
	{name: "dissolve", args: "<group_id>", help: "delete a group (owner only)", min: 1, max: 1,
		parse: parseDissolve, show: showRequestIDs},
	{name: "transfer", args: "<group_id> <uid>", help: "make a member the owner",
		min: 2, max: 2, parse: parseTransfer, show: showRequestIDs},
	{name: "recall", args: "<group_id> <seq>", help: "withdraw a message", min: 2, max: 2,
		parse: parseRecall, show: showRecall},
	{name: "read", args: "<group_id> <seq>", help: "move your read cursor forward to seq",
		min: 2, max: 2, parse: parseRead, show: showRead, retry: true},
	{name: "sync", args: "<group_id> [after_seq] [count]", min: 1, max: 3, parse: parseSync,
		show: showSync, help: "messages after your read cursor (or after_seq); marks them read",
		retry: true},
	{name: "groups", help: "your groups with unread counts", parse: parseGroups,
		show: showGroups, retry: true},
	{name: "apps", args: "[group_id|next]", help: "pending applications to your groups " +
		"(or to one), a page at a time; next goes on after the last page shown, login's " +
		"too", max: 1, parse: parseApps, prepare: prepareApps, show: showApps,
		retry: true},
	{name: "notices", help: "notices not yet shown (decisions, kicks, dissolutions), a " +
		"page at a time; each is acknowledged once shown", parse: parseNotices,
		show: showNotices, retry: true},
	{name: "passwd", args: "<old> <new>", help: "change your password", min: 2, max: 2,
		parse: parsePasswd, show: showPasswd},
	{name: "profile", args: "<display_name|location|desc|sex> <value...>",
		help: "change your profile", min: 2, max: -1, parse: parseProfile, show: showProfile},
	{name: "avatar", args: "<image_path|->", help: "upload and set your avatar (\"-\" removes it)",
		min: 1, max: 1, parse: parseAvatar, before: beforeAvatar, show: showProfile},
	{name: "fetch", args: "<file_id> <path>", help: "download a file to a new local file",
		min: 2, max: 2, parse: parseFetch, run: runFetch},
	{name: "help", args: "[command]", help: "list the commands", max: 1},
	{name: "exit", help: "leave the client"},
}

// findCommand returns the command named word, or nil.
func findCommand(word string) *command {
	for _, c := range chatCommands {
		if c.name == word {
			return c
		}
	}
	return nil
}

// parseLine finds a line's command and builds its request; local commands
// come back with a nil frame.
func parseLine(line string) (*command, argv, *pb.ClientFrame, error) {
	a := splitLine(line)
	cmd := findCommand(a.word())
	if cmd == nil {
		return nil, a, nil, usagef("unknown command %q; type help for the list", a.word())
	}
	if n := a.n(); n < cmd.min || cmd.max >= 0 && n > cmd.max {
		return cmd, a, nil, cmd.usage()
	}
	if cmd.parse == nil {
		return cmd, a, nil, nil
	}
	f, err := cmd.parse(a)
	return cmd, a, f, err
}

// synopsis is the command word with its arguments.
func (c *command) synopsis() string { return strings.TrimSpace(c.name + " " + c.args) }

func (c *command) usage() error { return usagef("usage: %s", c.synopsis()) }

// clientError is a command the client refuses without asking the server.
type clientError struct {
	code   string
	detail string
}

func (e *clientError) Error() string { return e.code + ": " + e.detail }

func usagef(format string, args ...any) error {
	return &clientError{code: codeUsage, detail: fmt.Sprintf(format, args...)}
}

func unsupportedf(format string, args ...any) error {
	return &clientError{code: codeUnsupported, detail: fmt.Sprintf(format, args...)}
}

// ---------------------------------------------------------------------------
// Arguments.

// argv is a command line split at spaces and tabs. It keeps the line so
// that a trailing free-text argument keeps its inner spacing.
type argv struct {
	line   string
	words  []string
	starts []int // offset of each word in line
}

func splitLine(line string) argv {
	a := argv{line: line}
	space := func(b byte) bool { return b == ' ' || b == '\t' }
	for i := 0; i < len(line); {
		for i < len(line) && space(line[i]) {
			i++
		}
		j := i
		for j < len(line) && !space(line[j]) {
			j++
		}
		if j > i {
			a.words = append(a.words, line[i:j])
			a.starts = append(a.starts, i)
		}
		i = j
	}
	return a
}

// word is the command word.
func (a argv) word() string {
	if len(a.words) == 0 {
		return ""
	}
	return a.words[0]
}

// n is the number of arguments after the command word.
func (a argv) n() int { return max(len(a.words)-1, 0) }

// at is argument i, counted from 0 after the command word.
func (a argv) at(i int) string { return a.words[i+1] }

// from is the text from argument i to the end of the line, "" if there is
// no argument i.
func (a argv) from(i int) string {
	if i >= a.n() {
		return ""
	}
	return strings.TrimRight(a.line[a.starts[i+1]:], " \t")
}

// id parses argument i as an ID or sequence number.
func (a argv) id(i int, what string) (uint64, error) {
	v, err := strconv.ParseUint(a.at(i), 10, 64)
	if err != nil {
		return 0, usagef("%s must be a whole number, not %q", what, a.at(i))
	}
	return v, nil
}

// optID parses argument i if present, or returns 0.
func (a argv) optID(i int, what string) (uint64, error) {
	if i >= a.n() {
		return 0, nil
	}
	return a.id(i, what)
}

// optCount parses argument i as a page size if present, or returns 0.
func (a argv) optCount(i int) (uint32, error) {
	if i >= a.n() {
		return 0, nil
	}
	v, err := strconv.ParseUint(a.at(i), 10, 32)
	if err != nil {
		return 0, usagef("count must be a whole number, not %q", a.at(i))
	}
	return uint32(v), nil
}

// password maps v1's "no password" spellings to the empty password.
func password(s string) string {
	if s == "-" || s == `""` {
		return ""
	}
	return s
}

func parseSex(s string) (pb.Sex, error) {
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 || v > 3 {
		return 0, usagef("sex must be 1 (male), 2 (female) or 3 (other), not %q", s)
	}
	return pb.Sex(v), nil
}

// ---------------------------------------------------------------------------
// Requests.

func parseReg(a argv) (*pb.ClientFrame, error) {
	sex, err := parseSex(a.at(3))
	if err != nil {
		return nil, err
	}
	return &pb.ClientFrame{Body: &pb.ClientFrame_Register{Register: &pb.RegisterRequest{
		LoginName: a.at(0), Password: a.at(1), DisplayName: a.at(2), Sex: sex,
		Location: a.at(4), Description: a.from(5)}}}, nil
}

// defaultDevice names this client in the server's debug logs.
const defaultDevice = "schat chat"

func parseLogin(a argv) (*pb.ClientFrame, error) {
	device := defaultDevice
	if a.n() > 2 {
		device = a.at(2)
	}
	return &pb.ClientFrame{Body: &pb.ClientFrame_Login{Login: &pb.LoginRequest{
		LoginName: a.at(0), Password: a.at(1), Device: device}}}, nil
}

func parseLogout(argv) (*pb.ClientFrame, error) {
	return &pb.ClientFrame{Body: &pb.ClientFrame_Logout{Logout: &pb.LogoutRequest{}}}, nil
}

func parsePing(argv) (*pb.ClientFrame, error) {
	return &pb.ClientFrame{Body: &pb.ClientFrame_Ping{Ping: &pb.PingRequest{
		ClientTimeMs: time.Now().UnixMilli()}}}, nil
}

// parseCreate gives the request a key of its own: sent again after a lost
// connection, it creates one group.
func parseCreate(a argv) (*pb.ClientFrame, error) {
	return &pb.ClientFrame{Body: &pb.ClientFrame_CreateGroup{CreateGroup: &pb.CreateGroupRequest{
		Name: a.at(0), JoinPassword: password(a.at(1)), Description: a.from(2),
		RequestKey: newRequestKey()}}}, nil
}

// newRequestKey is a random ID for a request that must land once however
// often it is sent.
func newRequestKey() string {
	return rand.Text()
}

func parseApply(a argv) (*pb.ClientFrame, error) {
	gid, err := a.id(0, "group_id")
	if err != nil {
		return nil, err
	}
	return &pb.ClientFrame{Body: &pb.ClientFrame_ApplyGroup{ApplyGroup: &pb.ApplyGroupRequest{
		GroupId: gid, JoinPassword: password(a.at(1)), Message: a.from(2)}}}, nil
}

// parseAudit accepts v1's form, with the group name second, and the
// shorter one without it; the name is not needed.
func parseAudit(a argv) (*pb.ClientFrame, error) {
	gid, err := a.id(0, "group_id")
	if err != nil {
		return nil, err
	}
	uid, err := a.id(a.n()-2, "apply_uid")
	if err != nil {
		return nil, err
	}
	decision := a.at(a.n() - 1)
	if decision != "0" && decision != "1" {
		return nil, usagef("the decision must be 1 (approve) or 0 (reject), not %q", decision)
	}
	return &pb.ClientFrame{Body: &pb.ClientFrame_DecideApplication{
		DecideApplication: &pb.DecideApplicationRequest{GroupId: gid, UserId: uid,
			Approve: decision == "1"}}}, nil
}

// twoIDs parses arguments 0 and 1 as IDs.
func twoIDs(a argv, first, second string) (uint64, uint64, error) {
	x, err := a.id(0, first)
	if err != nil {
		return 0, 0, err
	}
	y, err := a.id(1, second)
	return x, y, err
}

func parseQuit(a argv) (*pb.ClientFrame, error) {
	gid, err := a.id(0, "group_id")
	return &pb.ClientFrame{Body: &pb.ClientFrame_QuitGroup{
		QuitGroup: &pb.QuitGroupRequest{GroupId: gid}}}, err
}

func parseKick(a argv) (*pb.ClientFrame, error) {
	gid, uid, err := twoIDs(a, "group_id", "member_id")
	return &pb.ClientFrame{Body: &pb.ClientFrame_KickMember{
		KickMember: &pb.KickMemberRequest{GroupId: gid, UserId: uid}}}, err
}

func parseChat(a argv) (*pb.ClientFrame, error) {
	t, err := strconv.Atoi(a.at(0))
	switch {
	case err != nil || t < 0:
		return nil, usagef("chat_type must be a number (0: text), not %q", a.at(0))
	case t >= int(pb.MessageType_MESSAGE_TYPE_SYSTEM):
		return nil, usagef("chat_type %d is not a type a client can send", t)
	}
	gid, err := a.id(1, "group_id")
	if err != nil {
		return nil, err
	}
	// The message ID makes a send repeated after a lost connection land once.
	req := &pb.SendMessageRequest{GroupId: gid, Type: pb.MessageType(t), Text: a.from(2),
		ClientMsgId: newRequestKey()}
	if req.Type != pb.MessageType_MESSAGE_TYPE_TEXT {
		req.Text = a.from(3) // the caption after the file's path
	}
	return &pb.ClientFrame{Body: &pb.ClientFrame_SendMessage{SendMessage: req}}, nil
}

// parseHistory reads v1's "his <group_id> <now_msg_id>": the messages
// before now_msg_id, where 0 means the read cursor (here its message
// included); with no now_msg_id, the newest.
func parseHistory(a argv) (*pb.ClientFrame, error) {
	gid, err := a.id(0, "group_id")
	if err != nil {
		return nil, err
	}
	before, err := a.optID(1, "now_msg_id")
	if err != nil {
		return nil, err
	}
	limit, err := a.optCount(2)
	return &pb.ClientFrame{Body: &pb.ClientFrame_History{History: &pb.HistoryRequest{
		GroupId: gid, BeforeSeq: before, Limit: limit,
		FromCursor: a.n() > 1 && before == 0}}}, err
}

func parseGroupInfo(a argv) (*pb.ClientFrame, error) {
	gid, err := a.id(0, "group_id")
	return &pb.ClientFrame{Body: &pb.ClientFrame_GroupInfo{
		GroupInfo: &pb.GroupInfoRequest{GroupId: gid}}}, err
}

func parseProfiles(a argv) (*pb.ClientFrame, error) {
	ids := make([]uint64, a.n())
	for i := range ids {
		var err error
		if ids[i], err = a.id(i, "uid"); err != nil {
			return nil, err
		}
	}
	return &pb.ClientFrame{Body: &pb.ClientFrame_GetProfiles{
		GetProfiles: &pb.GetProfilesRequest{UserIds: ids}}}, nil
}

// prepareProfiles asks for the caller's own profile when no uid was given.
func prepareProfiles(s *chatSession, _ argv, f *pb.ClientFrame) error {
	req := f.GetGetProfiles()
	if len(req.UserIds) > 0 {
		return nil
	}
	if s.uid == 0 {
		return usagef("not logged in: give the uids to look up")
	}
	req.UserIds = []uint64{s.uid}
	return nil
}

// parseGround reads v1's "g_ground <start_index>". As in v1 the listing
// goes on from where the last call ended, and a negative index starts it
// over; other values are not offsets into it.
func parseGround(a argv) (*pb.ClientFrame, error) {
	if a.n() > 0 {
		if _, err := strconv.ParseInt(a.at(0), 10, 64); err != nil {
			return nil, usagef("start_index must be a whole number, not %q", a.at(0))
		}
	}
	return &pb.ClientFrame{Body: &pb.ClientFrame_ListPublicGroups{
		ListPublicGroups: &pb.ListPublicGroupsRequest{}}}, nil
}

// prepareGround starts the page where the last one ended, or at the
// start for a negative index.
func prepareGround(s *chatSession, a argv, f *pb.ClientFrame) error {
	if a.n() > 0 && strings.HasPrefix(a.at(0), "-") {
		s.groundAfter = 0
	}
	f.GetListPublicGroups().AfterGroupId = s.groundAfter
	return nil
}

// Group attribute IDs of g_attr: v1's 0-4, and 5 for the join password.
const (
	attrPublic = iota
	attrPrivate
	attrDescription
	attrName
	attrAvatar
	attrPassword
)

func parseGroupAttr(a argv) (*pb.ClientFrame, error) {
	gid, err := a.id(0, "group_id")
	if err != nil {
		return nil, err
	}
	attr, err := strconv.Atoi(a.at(1))
	if err != nil {
		return nil, usagef("attr_id must be a number 0-5, not %q", a.at(1))
	}
	req := &pb.UpdateGroupRequest{GroupId: gid}
	value := a.from(2)
	switch attr {
	case attrPublic, attrPrivate:
		if value != "" {
			return nil, usagef("attr_id %d takes no value", attr)
		}
		public := attr == attrPublic
		req.Public = &public
	case attrDescription:
		req.Description = &value
	case attrName:
		if value == "" {
			return nil, usagef("attr_id 3 needs the new name")
		}
		req.Name = &value
	case attrAvatar:
		if value == "" {
			return nil, usagef("attr_id 4 needs an image path, or - to remove the avatar")
		}
		none := ""
		req.AvatarFileId = &none
	case attrPassword:
		pw := password(value)
		req.JoinPassword = &pw
	default:
		return nil, usagef("attr_id must be 0-5, not %d", attr)
	}
	return &pb.ClientFrame{Body: &pb.ClientFrame_UpdateGroup{UpdateGroup: req}}, nil
}

func parseDissolve(a argv) (*pb.ClientFrame, error) {
	gid, err := a.id(0, "group_id")
	return &pb.ClientFrame{Body: &pb.ClientFrame_DissolveGroup{
		DissolveGroup: &pb.DissolveGroupRequest{GroupId: gid}}}, err
}

func parseTransfer(a argv) (*pb.ClientFrame, error) {
	gid, uid, err := twoIDs(a, "group_id", "uid")
	return &pb.ClientFrame{Body: &pb.ClientFrame_TransferOwnership{
		TransferOwnership: &pb.TransferOwnershipRequest{GroupId: gid, UserId: uid}}}, err
}

func parseRecall(a argv) (*pb.ClientFrame, error) {
	gid, seq, err := twoIDs(a, "group_id", "seq")
	return &pb.ClientFrame{Body: &pb.ClientFrame_RecallMessage{
		RecallMessage: &pb.RecallMessageRequest{GroupId: gid, Seq: seq}}}, err
}

func parseRead(a argv) (*pb.ClientFrame, error) {
	gid, seq, err := twoIDs(a, "group_id", "seq")
	return &pb.ClientFrame{Body: &pb.ClientFrame_MarkRead{
		MarkRead: &pb.MarkReadRequest{GroupId: gid, Seq: seq}}}, err
}

// parseSync pages from the read cursor unless after_seq is given.
func parseSync(a argv) (*pb.ClientFrame, error) {
	gid, err := a.id(0, "group_id")
	if err != nil {
		return nil, err
	}
	after, err := a.optID(1, "after_seq")
	if err != nil {
		return nil, err
	}
	limit, err := a.optCount(2)
	return &pb.ClientFrame{Body: &pb.ClientFrame_Sync{Sync: &pb.SyncRequest{
		GroupId: gid, AfterSeq: after, Limit: limit, FromCursor: a.n() < 2}}}, err
}

func parseGroups(argv) (*pb.ClientFrame, error) {
	return &pb.ClientFrame{Body: &pb.ClientFrame_ListMyGroups{
		ListMyGroups: &pb.ListMyGroupsRequest{}}}, nil
}

func parseApps(a argv) (*pb.ClientFrame, error) {
	var gid uint64
	if a.n() == 0 || a.at(0) != "next" {
		var err error
		if gid, err = a.optID(0, "group_id"); err != nil {
			return nil, err
		}
	}
	return &pb.ClientFrame{Body: &pb.ClientFrame_ListApplications{
		ListApplications: &pb.ListApplicationsRequest{GroupId: gid}}}, nil
}

// prepareApps turns "apps next" into the request for the page after the
// last one shown.
func prepareApps(s *chatSession, a argv, f *pb.ClientFrame) error {
	if a.n() == 0 || a.at(0) != "next" {
		return nil
	}
	if s.appsNext == nil {
		return usagef("no listing to go on with: apps lists from the start")
	}
	f.Body = &pb.ClientFrame_ListApplications{ListApplications: proto.CloneOf(s.appsNext)}
	return nil
}

// nextApps is the request for the page after apps, listed by req, or nil
// when there are no more.
func nextApps(req *pb.ListApplicationsRequest, apps []*pb.Application,
	more bool) *pb.ListApplicationsRequest {
	if !more || len(apps) == 0 {
		return nil
	}
	last := apps[len(apps)-1]
	return &pb.ListApplicationsRequest{GroupId: req.GroupId, AfterGroupId: last.GroupId,
		AfterUserId: last.UserId, Limit: req.Limit}
}

func parseNotices(argv) (*pb.ClientFrame, error) {
	return &pb.ClientFrame{Body: &pb.ClientFrame_ListNotices{
		ListNotices: &pb.ListNoticesRequest{}}}, nil
}

func parsePasswd(a argv) (*pb.ClientFrame, error) {
	return &pb.ClientFrame{Body: &pb.ClientFrame_ChangePassword{
		ChangePassword: &pb.ChangePasswordRequest{OldPassword: a.at(0),
			NewPassword: a.at(1)}}}, nil
}

func parseProfile(a argv) (*pb.ClientFrame, error) {
	req := &pb.UpdateProfileRequest{}
	value := a.from(1)
	switch a.at(0) {
	case "display_name", "name":
		req.DisplayName = &value
	case "location":
		req.Location = &value
	case "desc", "description":
		req.Description = &value
	case "sex":
		sex, err := parseSex(value)
		if err != nil {
			return nil, err
		}
		req.Sex = &sex
	default:
		return nil, usagef("profile field must be display_name, location, desc or sex, not %q",
			a.at(0))
	}
	return &pb.ClientFrame{Body: &pb.ClientFrame_UpdateProfile{UpdateProfile: req}}, nil
}
