package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
)

func frame(body any) *pb.ClientFrame {
	f := &pb.ClientFrame{}
	switch b := body.(type) {
	case *pb.RegisterRequest:
		f.Body = &pb.ClientFrame_Register{Register: b}
	case *pb.LoginRequest:
		f.Body = &pb.ClientFrame_Login{Login: b}
	case *pb.LogoutRequest:
		f.Body = &pb.ClientFrame_Logout{Logout: b}
	case *pb.CreateGroupRequest:
		f.Body = &pb.ClientFrame_CreateGroup{CreateGroup: b}
	case *pb.ApplyGroupRequest:
		f.Body = &pb.ClientFrame_ApplyGroup{ApplyGroup: b}
	case *pb.DecideApplicationRequest:
		f.Body = &pb.ClientFrame_DecideApplication{DecideApplication: b}
	case *pb.QuitGroupRequest:
		f.Body = &pb.ClientFrame_QuitGroup{QuitGroup: b}
	case *pb.KickMemberRequest:
		f.Body = &pb.ClientFrame_KickMember{KickMember: b}
	case *pb.SendMessageRequest:
		f.Body = &pb.ClientFrame_SendMessage{SendMessage: b}
	case *pb.HistoryRequest:
		f.Body = &pb.ClientFrame_History{History: b}
	case *pb.GroupInfoRequest:
		f.Body = &pb.ClientFrame_GroupInfo{GroupInfo: b}
	case *pb.GetProfilesRequest:
		f.Body = &pb.ClientFrame_GetProfiles{GetProfiles: b}
	case *pb.ListPublicGroupsRequest:
		f.Body = &pb.ClientFrame_ListPublicGroups{ListPublicGroups: b}
	case *pb.UpdateGroupRequest:
		f.Body = &pb.ClientFrame_UpdateGroup{UpdateGroup: b}
	case *pb.DissolveGroupRequest:
		f.Body = &pb.ClientFrame_DissolveGroup{DissolveGroup: b}
	case *pb.TransferOwnershipRequest:
		f.Body = &pb.ClientFrame_TransferOwnership{TransferOwnership: b}
	case *pb.RecallMessageRequest:
		f.Body = &pb.ClientFrame_RecallMessage{RecallMessage: b}
	case *pb.MarkReadRequest:
		f.Body = &pb.ClientFrame_MarkRead{MarkRead: b}
	case *pb.SyncRequest:
		f.Body = &pb.ClientFrame_Sync{Sync: b}
	case *pb.ListMyGroupsRequest:
		f.Body = &pb.ClientFrame_ListMyGroups{ListMyGroups: b}
	case *pb.ListApplicationsRequest:
		f.Body = &pb.ClientFrame_ListApplications{ListApplications: b}
	case *pb.ListNoticesRequest:
		f.Body = &pb.ClientFrame_ListNotices{ListNotices: b}
	case *pb.ChangePasswordRequest:
		f.Body = &pb.ClientFrame_ChangePassword{ChangePassword: b}
	case *pb.UpdateProfileRequest:
		f.Body = &pb.ClientFrame_UpdateProfile{UpdateProfile: b}
	default:
		panic("frame: unhandled body type")
	}
	return f
}

func ptr[T any](v T) *T { return &v }

const text = pb.MessageType_MESSAGE_TYPE_TEXT

// parseCases covers every command word: a line and the request it must
// build, or the client-side code it must be refused with. want nil and
// code "" means a local command.
var parseCases = []struct {
	line string
	want *pb.ClientFrame
	code string
}{
	// v1's demo lines, word for word.
	{"reg protoss 123 zelot 1 shenzhen", frame(&pb.RegisterRequest{LoginName: "protoss",
		Password: "123", DisplayName: "zelot", Sex: pb.Sex_SEX_MALE, Location: "shenzhen"}), ""},
	{"login protoss 123", frame(&pb.LoginRequest{LoginName: "protoss", Password: "123",
		Device: defaultDevice}), ""},
	{"create sc2 123", frame(&pb.CreateGroupRequest{Name: "sc2", JoinPassword: "123"}), ""},
	{"audit 5025 sc2 10010 1", frame(&pb.DecideApplicationRequest{GroupId: 5025,
		UserId: 10010, Approve: true}), ""},
	{"chat 0 5025 hello", frame(&pb.SendMessageRequest{GroupId: 5025, Type: text,
		Text: "hello"}), ""},
	{"chat 0 5025 no.1message", frame(&pb.SendMessageRequest{GroupId: 5025, Type: text,
		Text: "no.1message"}), ""},

	// reg
	{"reg a pw A 2 x y  z ", frame(&pb.RegisterRequest{LoginName: "a", Password: "pw",
		DisplayName: "A", Sex: pb.Sex_SEX_FEMALE, Location: "x", Description: "y  z"}), ""},
	{"reg a pw A 9 x", nil, codeUsage},
	{"reg a pw A 1", nil, codeUsage},
	// login
	{"login a pw phone", frame(&pb.LoginRequest{LoginName: "a", Password: "pw",
		Device: "phone"}), ""},
	{"login a", nil, codeUsage},
	{"login a b c d", nil, codeUsage},
	// logout, ping (ping carries a clock, checked apart)
	{"logout", frame(&pb.LogoutRequest{}), ""},
	{"logout now", nil, codeUsage},
	{"ping x", nil, codeUsage},
	// create
	{"create g - about\tit", frame(&pb.CreateGroupRequest{Name: "g",
		Description: "about\tit"}), ""},
	{`create g ""`, frame(&pb.CreateGroupRequest{Name: "g"}), ""},
	{"create g", nil, codeUsage},
	// apply
	{"apply 7 123 let me in", frame(&pb.ApplyGroupRequest{GroupId: 7, JoinPassword: "123",
		Message: "let me in"}), ""},
	{"apply 7 -", frame(&pb.ApplyGroupRequest{GroupId: 7}), ""},
	{"apply x 123 hi", nil, codeUsage},
	// audit
	{"audit 7 42 0", frame(&pb.DecideApplicationRequest{GroupId: 7, UserId: 42}), ""},
	{"audit 7 sc2 42 2", nil, codeUsage},
	{"audit 7 42", nil, codeUsage},
	{"audit 7 a b c 1", nil, codeUsage},
	// quit, kick
	{"quit 7", frame(&pb.QuitGroupRequest{GroupId: 7}), ""},
	{"quit", nil, codeUsage},
	{"kick 7 42", frame(&pb.KickMemberRequest{GroupId: 7, UserId: 42}), ""},
	{"kick 7 -1", nil, codeUsage},
	// chat
	{"chat 0 7  two  spaces ", frame(&pb.SendMessageRequest{GroupId: 7, Type: text,
		Text: "two  spaces"}), ""},
	{"chat 1 7 pic.jpg", frame(&pb.SendMessageRequest{GroupId: 7,
		Type: pb.MessageType_MESSAGE_TYPE_IMAGE}), ""},
	{"chat 4 7 f.zip the  report", frame(&pb.SendMessageRequest{GroupId: 7,
		Type: pb.MessageType_MESSAGE_TYPE_FILE, Text: "the  report"}), ""},
	{"chat 5 7 system", nil, codeUsage},
	{"chat x 7 hi", nil, codeUsage},
	{"chat 0 7", nil, codeUsage},
	// his
	{"his 7", frame(&pb.HistoryRequest{GroupId: 7}), ""},
	{"his 7 0", frame(&pb.HistoryRequest{GroupId: 7, FromCursor: true}), ""},
	{"his 7 0 5", frame(&pb.HistoryRequest{GroupId: 7, FromCursor: true, Limit: 5}), ""},
	{"his 7 40 10", frame(&pb.HistoryRequest{GroupId: 7, BeforeSeq: 40, Limit: 10}), ""},
	{"his 7 40 ten", nil, codeUsage},
	// grp_info
	{"grp_info 7", frame(&pb.GroupInfoRequest{GroupId: 7}), ""},
	{"grp_info", nil, codeUsage},
	// u_prof
	{"u_prof", frame(&pb.GetProfilesRequest{UserIds: []uint64{}}), ""},
	{"u_prof 1 2", frame(&pb.GetProfilesRequest{UserIds: []uint64{1, 2}}), ""},
	{"u_prof 1 me", nil, codeUsage},
	// g_ground
	// (where the page starts is the session's; see TestChat_GroundCursor)
	{"g_ground", frame(&pb.ListPublicGroupsRequest{}), ""},
	{"g_ground -1", frame(&pb.ListPublicGroupsRequest{}), ""},
	{"g_ground 0", frame(&pb.ListPublicGroupsRequest{}), ""},
	{"g_ground first", nil, codeUsage},
	// g_attr
	{"g_attr 7 0", frame(&pb.UpdateGroupRequest{GroupId: 7, Public: ptr(true)}), ""},
	{"g_attr 7 1", frame(&pb.UpdateGroupRequest{GroupId: 7, Public: ptr(false)}), ""},
	{"g_attr 7 2 a new  story", frame(&pb.UpdateGroupRequest{GroupId: 7,
		Description: ptr("a new  story")}), ""},
	{"g_attr 7 2", frame(&pb.UpdateGroupRequest{GroupId: 7, Description: ptr("")}), ""},
	{"g_attr 7 3 sc3", frame(&pb.UpdateGroupRequest{GroupId: 7, Name: ptr("sc3")}), ""},
	{"g_attr 7 5 secret", frame(&pb.UpdateGroupRequest{GroupId: 7,
		JoinPassword: ptr("secret")}), ""},
	{"g_attr 7 5 -", frame(&pb.UpdateGroupRequest{GroupId: 7, JoinPassword: ptr("")}), ""},
	{"g_attr 7 5", frame(&pb.UpdateGroupRequest{GroupId: 7, JoinPassword: ptr("")}), ""},
	{"g_attr 7 4 logo.png", frame(&pb.UpdateGroupRequest{GroupId: 7,
		AvatarFileId: ptr("")}), ""},
	{"g_attr 7 4", nil, codeUsage},
	{"g_attr 7 3", nil, codeUsage},
	{"g_attr 7 0 yes", nil, codeUsage},
	{"g_attr 7 6 x", nil, codeUsage},
	// dissolve, transfer, recall, read
	{"dissolve 7", frame(&pb.DissolveGroupRequest{GroupId: 7}), ""},
	{"transfer 7 42", frame(&pb.TransferOwnershipRequest{GroupId: 7, UserId: 42}), ""},
	{"transfer 7", nil, codeUsage},
	{"recall 7 3", frame(&pb.RecallMessageRequest{GroupId: 7, Seq: 3}), ""},
	{"recall 7 last", nil, codeUsage},
	{"read 7 3", frame(&pb.MarkReadRequest{GroupId: 7, Seq: 3}), ""},
	// sync
	{"sync 7", frame(&pb.SyncRequest{GroupId: 7, FromCursor: true}), ""},
	{"sync 7 0", frame(&pb.SyncRequest{GroupId: 7}), ""},
	{"sync 7 3 20", frame(&pb.SyncRequest{GroupId: 7, AfterSeq: 3, Limit: 20}), ""},
	// groups, apps
	{"groups", frame(&pb.ListMyGroupsRequest{}), ""},
	{"apps", frame(&pb.ListApplicationsRequest{}), ""},
	{"apps 7", frame(&pb.ListApplicationsRequest{GroupId: 7}), ""},
	{"apps next", frame(&pb.ListApplicationsRequest{}), ""},
	{"apps seven", nil, codeUsage},
	{"notices", frame(&pb.ListNoticesRequest{}), ""},
	// passwd, profile
	{"passwd old new", frame(&pb.ChangePasswordRequest{OldPassword: "old",
		NewPassword: "new"}), ""},
	{"passwd old", nil, codeUsage},
	{"profile display_name Zeratul the Dark", frame(&pb.UpdateProfileRequest{
		DisplayName: ptr("Zeratul the Dark")}), ""},
	{"profile location Aiur", frame(&pb.UpdateProfileRequest{Location: ptr("Aiur")}), ""},
	{"profile desc dark templar", frame(&pb.UpdateProfileRequest{
		Description: ptr("dark templar")}), ""},
	{"profile sex 2", frame(&pb.UpdateProfileRequest{Sex: ptr(pb.Sex_SEX_FEMALE)}), ""},
	{"profile sex x", nil, codeUsage},
	{"profile age 3", nil, codeUsage},
	// avatar, fetch (their uploads and downloads run apart from parsing)
	{"avatar me.png", frame(&pb.UpdateProfileRequest{AvatarFileId: ptr("")}), ""},
	{"avatar", nil, codeUsage},
	{"fetch 1001-0f3a out.bin", nil, ""},
	{"fetch 1001 out.bin", nil, codeUsage},
	{"fetch 1001-0f3a", nil, codeUsage},
	// local commands
	{"help", nil, ""},
	{"help reg", nil, ""},
	{"exit", nil, ""},
	{"exit now", nil, codeUsage},
	// unknown
	{"fly 7", nil, codeUsage},
}

func TestParseLine_Commands(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.line, func(t *testing.T) {
			_, _, got, err := parseLine(tc.line)
			if tc.code != "" {
				var ce *clientError
				if !errors.As(err, &ce) || ce.code != tc.code {
					t.Fatalf("got error %v, want code %s", err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			takeRequestKey(t, got)
			if !proto.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// takeRequestKey checks that a send or a create carries a key that makes
// a retry land once, and clears it for comparison; it returns the key.
func takeRequestKey(t *testing.T, f *pb.ClientFrame) string {
	t.Helper()
	var key *string
	switch b := f.GetBody().(type) {
	case *pb.ClientFrame_SendMessage:
		key = &b.SendMessage.ClientMsgId
	case *pb.ClientFrame_CreateGroup:
		key = &b.CreateGroup.RequestKey
	default:
		return ""
	}
	k := *key
	if k == "" || len(k) > 64 {
		t.Fatalf("got key %q in %v, want one of 1..64 characters", k, f)
	}
	*key = ""
	return k
}

// TestParseLine_FreshKeys gives each line its own key: the same text sent
// twice is two messages.
func TestParseLine_FreshKeys(t *testing.T) {
	for _, line := range []string{"chat 0 7 hello", "create g -"} {
		_, _, a, _ := parseLine(line)
		_, _, b, _ := parseLine(line)
		if ka, kb := takeRequestKey(t, a), takeRequestKey(t, b); ka == kb {
			t.Errorf("%s: got key %q twice, want a fresh one per line", line, ka)
		}
	}
}

// TestChat_GroundCursor pages g_ground as v1 did: on from where the last
// page ended, over from the start for a negative start_index.
func TestChat_GroundCursor(t *testing.T) {
	s := &chatSession{groundAfter: 1005}
	for _, tc := range []struct {
		line string
		want uint64
	}{{"g_ground", 1005}, {"g_ground 0", 1005}, {"g_ground 3", 1005}, {"g_ground -1", 0}} {
		s.groundAfter = 1005
		cmd, a, f, err := parseLine(tc.line)
		if err == nil {
			err = cmd.prepare(s, a, f)
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.line, err)
		}
		if got := f.GetListPublicGroups().AfterGroupId; got != tc.want {
			t.Errorf("%s: got after %d, want %d", tc.line, got, tc.want)
		}
	}
	r := &pb.Response{Body: &pb.Response_PublicGroups{PublicGroups: &pb.ListPublicGroupsResponse{}}}
	showGround(context.Background(), s, nil, r)
	if s.groundAfter != 0 {
		t.Errorf("got after %d once the last page was shown, want the start", s.groundAfter)
	}
}

// TestChat_AppsNext goes on after the last application shown, and refuses
// to go on when nothing is left.
func TestChat_AppsNext(t *testing.T) {
	s := &chatSession{}
	s.loggedIn(&pb.LoginResponse{MoreApplications: true, Applications: []*pb.Application{
		{GroupId: 7, UserId: 3}, {GroupId: 8, UserId: 2}}})
	cmd, a, f, _ := parseLine("apps next")
	if err := cmd.prepare(s, a, f); err != nil {
		t.Fatal(err)
	}
	want := &pb.ListApplicationsRequest{AfterGroupId: 8, AfterUserId: 2}
	if got := f.GetListApplications(); !proto.Equal(got, want) {
		t.Fatalf("got %v after login, want %v", got, want)
	}
	r := &pb.Response{Body: &pb.Response_Applications{
		Applications: &pb.ListApplicationsResponse{}}}
	showApps(context.Background(), s, f, r)
	_, a, f, _ = parseLine("apps next")
	var ce *clientError
	if err := cmd.prepare(s, a, f); !errors.As(err, &ce) || ce.code != codeUsage {
		t.Fatalf("got %v with nothing left, want a usage error", err)
	}
}

func TestParseLine_Ping(t *testing.T) {
	_, _, f, err := parseLine("ping")
	if err != nil {
		t.Fatalf("got error %v, want none", err)
	}
	if f.GetPing().GetClientTimeMs() == 0 {
		t.Errorf("got ping %v, want the client's clock in it", f)
	}
}

// TestParseLine_EveryCommandCovered keeps parseCases in step with the
// command table: every word needs an accepted case.
func TestParseLine_EveryCommandCovered(t *testing.T) {
	covered := map[string]bool{"ping": true}
	for _, tc := range parseCases {
		if tc.code == "" {
			covered[splitLine(tc.line).word()] = true
		}
	}
	for _, c := range chatCommands {
		if !covered[c.name] {
			t.Errorf("command %q has no accepted case in parseCases", c.name)
		}
	}
}

func TestCommand_HelpListsEveryCommand(t *testing.T) {
	fields, err := helpFields(splitLine("help"))
	if err != nil {
		t.Fatalf("got error %v, want none", err)
	}
	if got, want := len(fields[0].v.(rows)), len(chatCommands); got != want {
		t.Errorf("got %d commands in help, want %d", got, want)
	}
	if _, err := helpFields(splitLine("help fly")); err == nil {
		t.Errorf("got no error for help on an unknown command, want one")
	}
}

func TestPrinter_ResultJSON(t *testing.T) {
	var b bytes.Buffer
	p := newPrinter(&b, true, "")
	p.result(&report{cmd: "reg", code: codeOK, fields: obj{{"name", "protoss"}, {"uid", 10001},
		{"list", rows{plainRow(obj{{"seq", 1}})}}, {"time", millis(5)}}})
	want := `{"cmd":"reg","ok":true,"code":"OK","name":"protoss","uid":10001,` +
		`"list":[{"seq":1}],"time":5}` + "\n"
	if b.String() != want {
		t.Errorf("got %s, want %s", b.String(), want)
	}
	var v map[string]any
	if err := json.Unmarshal(b.Bytes(), &v); err != nil {
		t.Errorf("got invalid JSON: %v", err)
	}
}

func TestPrinter_ResultHuman(t *testing.T) {
	var b bytes.Buffer
	p := newPrinter(&b, false, "")
	p.result(&report{cmd: "create", label: "create group", code: codeOK,
		fields: obj{{"grp_name", "sc2"}, {"grp_id", 1001}}})
	p.result(&report{cmd: "apply", label: "apply group", code: "WRONG_PASSWORD",
		detail: "wrong join password"})
	want := "create group result:OK grp_name:sc2 grp_id:1001\n" +
		"apply group result:WRONG_PASSWORD detail:wrong join password\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}
