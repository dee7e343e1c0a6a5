package fsm

import (
	"bytes"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/storage"
)

func TestFSM_Group_Refused(t *testing.T) {
	limits := func(n uint32) *pb.GroupLimits { return &pb.GroupLimits{MaxMembers: n} }
	runRefusals(t, newWorld, []refusal{
		{name: "create exists with other owner", want: pb.Code_INTERNAL,
			cmd: cmd(&pb.CreateGroupCmd{GroupId: g1, OwnerId: bob, Name: "x"})},
		{name: "create without id", want: pb.Code_INVALID_ARGUMENT,
			cmd: cmd(&pb.CreateGroupCmd{OwnerId: bob, Name: "x"})},
		{name: "apply missing group", want: pb.Code_NOT_FOUND,
			cmd: cmd(&pb.ApplyCmd{GroupId: 9, UserId: carol})},
		{name: "apply as member", want: pb.Code_ALREADY_MEMBER,
			cmd: cmd(&pb.ApplyCmd{GroupId: g1, UserId: bob})},
		{name: "apply as owner", want: pb.Code_ALREADY_MEMBER,
			cmd: cmd(&pb.ApplyCmd{GroupId: g1, UserId: alice})},
		{name: "apply twice", want: pb.Code_ALREADY_APPLIED,
			cmd: cmd(&pb.ApplyCmd{GroupId: g1, UserId: dave})},
		{name: "apply without password", want: pb.Code_WRONG_PASSWORD,
			cmd: cmd(&pb.ApplyCmd{GroupId: g2, UserId: carol, PasswordVersion: 1})},
		{name: "apply with stale password", want: pb.Code_WRONG_PASSWORD,
			cmd: cmd(&pb.ApplyCmd{GroupId: g2, UserId: carol, PasswordOk: true,
				PasswordVersion: 2})},
		{name: "decide missing group", want: pb.Code_NOT_FOUND,
			cmd: cmd(&pb.DecideCmd{GroupId: 9, OwnerId: alice, UserId: dave, Approve: true})},
		{name: "decide by member", want: pb.Code_PERMISSION_DENIED,
			cmd: cmd(&pb.DecideCmd{GroupId: g1, OwnerId: bob, UserId: dave, Approve: true})},
		{name: "decide without application", want: pb.Code_NOT_FOUND,
			cmd: cmd(&pb.DecideCmd{GroupId: g1, OwnerId: alice, UserId: carol, Approve: true})},
		{name: "deny without application", want: pb.Code_NOT_FOUND,
			cmd: cmd(&pb.DecideCmd{GroupId: g1, OwnerId: alice, UserId: carol})},
		{name: "approve into full group", want: pb.Code_LIMIT_EXCEEDED,
			cmd: cmd(&pb.DecideCmd{GroupId: g1, OwnerId: alice, UserId: dave, Approve: true,
				Limits: limits(2)})},
		{name: "quit missing group", want: pb.Code_NOT_FOUND,
			cmd: cmd(&pb.LeaveCmd{GroupId: 9, ActorId: bob, UserId: bob})},
		{name: "quit as non-member", want: pb.Code_NOT_MEMBER,
			cmd: cmd(&pb.LeaveCmd{GroupId: g1, ActorId: carol, UserId: carol})},
		{name: "quit as owner", want: pb.Code_OWNER_MUST_TRANSFER,
			cmd: cmd(&pb.LeaveCmd{GroupId: g1, ActorId: alice, UserId: alice})},
		{name: "kick by member", want: pb.Code_PERMISSION_DENIED,
			cmd: cmd(&pb.LeaveCmd{GroupId: g1, ActorId: bob, UserId: alice})},
		{name: "kick by outsider", want: pb.Code_PERMISSION_DENIED,
			cmd: cmd(&pb.LeaveCmd{GroupId: g1, ActorId: carol, UserId: bob})},
		{name: "kick non-member", want: pb.Code_NOT_MEMBER,
			cmd: cmd(&pb.LeaveCmd{GroupId: g1, ActorId: alice, UserId: dave})},
		{name: "dissolve missing group", want: pb.Code_NOT_FOUND,
			cmd: cmd(&pb.DissolveCmd{GroupId: 9, ActorId: alice})},
		{name: "dissolve by member", want: pb.Code_PERMISSION_DENIED,
			cmd: cmd(&pb.DissolveCmd{GroupId: g1, ActorId: bob})},
		{name: "transfer missing group", want: pb.Code_NOT_FOUND,
			cmd: cmd(&pb.TransferCmd{GroupId: 9, ActorId: alice, ToId: bob})},
		{name: "transfer by member", want: pb.Code_PERMISSION_DENIED,
			cmd: cmd(&pb.TransferCmd{GroupId: g1, ActorId: bob, ToId: bob})},
		{name: "transfer to self", want: pb.Code_INVALID_ARGUMENT,
			cmd: cmd(&pb.TransferCmd{GroupId: g1, ActorId: alice, ToId: alice})},
		{name: "transfer to non-member", want: pb.Code_NOT_MEMBER,
			cmd: cmd(&pb.TransferCmd{GroupId: g1, ActorId: alice, ToId: dave})},
		{name: "update missing group", want: pb.Code_NOT_FOUND,
			cmd: cmd(&pb.UpdateGroupCmd{GroupId: 9, ActorId: alice, Name: proto.String("x")})},
		{name: "update by member", want: pb.Code_PERMISSION_DENIED,
			cmd: cmd(&pb.UpdateGroupCmd{GroupId: g1, ActorId: bob, Name: proto.String("x")})},
		{name: "meta command on group shard", want: pb.Code_INTERNAL,
			cmd: cmd(&pb.RegisterCmd{LoginName: "x"})},
		{name: "empty command", want: pb.Code_INTERNAL, cmd: &pb.Command{}},
	})
}

func TestFSM_CreateGroup_Stores(t *testing.T) {
	h := newFSM(t, KindGroup)
	res := h.must(t, cmd(&pb.CreateGroupCmd{GroupId: g1, OwnerId: alice, OwnerName: "Alice",
		Name: "one", Description: "d", Public: true, JoinPasswordHash: pw1}))

	want := &pb.Group{Id: g1, Name: "one", Description: "d", OwnerId: alice, Public: true,
		JoinPasswordHash: pw1, PasswordVersion: 1, MemberCount: 1, LastSeq: 1,
		CreatedMs: startMs}
	if got := h.group(t, g1); !proto.Equal(got, want) {
		t.Fatalf("got group %v, want %v", got, want)
	}
	if res.GroupID != g1 || !proto.Equal(res.Group, want) {
		t.Fatalf("got result %d %v, want %v", res.GroupID, res.Group, want)
	}
	wantM := &pb.Member{UserId: alice, Role: pb.Role_ROLE_OWNER, JoinedMs: startMs, ReadSeq: 1}
	if got := h.member(t, g1, alice); !proto.Equal(got, wantM) {
		t.Fatalf("got owner %v, want %v", got, wantM)
	}
	wantMsg := &pb.ChatMessage{GroupId: g1, Seq: 1, TimeMs: startMs,
		Type:   pb.MessageType_MESSAGE_TYPE_SYSTEM,
		System: &pb.SystemNote{Kind: pb.SystemNote_CREATED, UserId: alice, Name: "Alice"}}
	if got := h.message(t, g1, 1); !proto.Equal(got, wantMsg) {
		t.Fatalf("got message %v, want %v", got, wantMsg)
	}
	wantEvents(t, h.take(), "g1001 u[10001] member:JOINED", "g1001 u[] note:CREATED")
	if got := groupIDs(h.mine(t, alice)); !slices.Equal(got, []uint64{g1}) {
		t.Fatalf("got alice's groups %v, want [%d]", got, g1)
	}
	if got := h.public(t); !slices.Equal(got, []uint64{g1}) {
		t.Fatalf("got public groups %v, want [%d]", got, g1)
	}
}

func TestFSM_CreateGroup_Retry(t *testing.T) {
	h := newWorld(t)
	before := h.dump(t, false)

	res := h.must(t, cmd(&pb.CreateGroupCmd{GroupId: g2, OwnerId: alice, Name: "again"}))

	if !res.Existing || res.Group.GetName() != "two" {
		t.Fatalf("got existing %t group %v, want the stored group", res.Existing, res.Group)
	}
	wantEvents(t, h.take())
	sameState(t, h.dump(t, false), before)
	if got := h.public(t); !slices.Equal(got, []uint64{g1}) {
		t.Fatalf("got public groups %v, want only the public one", got)
	}
}

func TestFSM_Apply_Password(t *testing.T) {
	tests := []struct {
		name    string
		gid     uint64
		ok      bool
		version uint64
		want    pb.Code
	}{
		{"open group ignores password", g1, false, 0, pb.Code_OK},
		{"verified current version", g2, true, 1, pb.Code_OK},
		{"not verified", g2, false, 1, pb.Code_WRONG_PASSWORD},
		{"verified old version", g2, true, 0, pb.Code_WRONG_PASSWORD},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newWorld(t)
			res := h.apply(t, cmd(&pb.ApplyCmd{GroupId: tc.gid, UserId: carol,
				DisplayName: "Carol", Message: "let me in", PasswordOk: tc.ok,
				PasswordVersion: tc.version}))
			wantCode(t, res, tc.want)
			if tc.want != pb.Code_OK {
				return
			}
			wantEvents(t, h.take(), "g0 u[10001] application")
			want := &pb.Application{GroupId: tc.gid, GroupName: h.group(t, tc.gid).Name,
				UserId: carol, DisplayName: "Carol", Message: "let me in", TimeMs: startMs}
			apps := h.apps(t, tc.gid)
			i := slices.IndexFunc(apps, func(a *pb.Application) bool { return a.UserId == carol })
			if i < 0 || !proto.Equal(apps[i], want) {
				t.Fatalf("got applications %v, want one %v", apps, want)
			}
		})
	}
}

func TestFSM_Decide_Approve(t *testing.T) {
	h := newWorld(t)
	h.now += 10
	last := h.group(t, g1).LastSeq

	h.must(t, cmd(&pb.DecideCmd{GroupId: g1, OwnerId: alice, UserId: dave, Approve: true,
		UserName: "Dave", Limits: &pb.GroupLimits{MaxMembers: 3}}))

	g := h.group(t, g1)
	if g.MemberCount != 3 || g.LastSeq != last+1 {
		t.Fatalf("got count %d last %d, want 3 and %d", g.MemberCount, g.LastSeq, last+1)
	}
	want := &pb.Member{UserId: dave, Role: pb.Role_ROLE_MEMBER, JoinedMs: h.now, ReadSeq: last}
	if got := h.member(t, g1, dave); !proto.Equal(got, want) {
		t.Fatalf("got member %v, want %v", got, want)
	}
	note := h.message(t, g1, last+1).System
	if note.Kind != pb.SystemNote_JOINED || note.UserId != dave || note.Name != "Dave" {
		t.Fatalf("got note %v, want JOINED by dave", note)
	}
	if apps := h.apps(t, g1); len(apps) != 0 {
		t.Fatalf("got applications %v, want none", apps)
	}
	evs := h.take()
	wantEvents(t, evs, "g1001 u[10004] member:JOINED", "g1001 u[] note:JOINED",
		"g0 u[10004] decided:true notice")
	if n := evs[0].Event.GetMember().MemberCount; n != 3 {
		t.Fatalf("got member count %d in event, want 3", n)
	}
	wantNotice(t, h, dave, evs[2])
	if got := groupIDs(h.mine(t, dave)); !slices.Equal(got, []uint64{g1}) {
		t.Fatalf("got dave's groups %v, want [%d]", got, g1)
	}
}

func TestFSM_Decide_Deny(t *testing.T) {
	h := newWorld(t)
	before := h.group(t, g1)

	h.must(t, cmd(&pb.DecideCmd{GroupId: g1, OwnerId: alice, UserId: dave}))

	if m := h.member(t, g1, dave); m != nil {
		t.Fatalf("got member %v, want none", m)
	}
	if apps := h.apps(t, g1); len(apps) != 0 {
		t.Fatalf("got applications %v, want none", apps)
	}
	if g := h.group(t, g1); !proto.Equal(g, before) {
		t.Fatalf("got group %v, want unchanged %v", g, before)
	}
	evs := h.take()
	wantEvents(t, evs, "g0 u[10004] decided:false notice")
	wantNotice(t, h, dave, evs[0])
	// Dave may apply again.
	h.must(t, cmd(&pb.ApplyCmd{GroupId: g1, UserId: dave}))
}

func TestFSM_Leave_Quit(t *testing.T) {
	h := newWorld(t)
	notices := len(h.notices(t, bob))
	h.must(t, cmd(&pb.LeaveCmd{GroupId: g1, ActorId: bob, UserId: bob, UserName: "Bob"}))

	if m := h.member(t, g1, bob); m != nil {
		t.Fatalf("got member %v, want none", m)
	}
	g := h.group(t, g1)
	if g.MemberCount != 1 {
		t.Fatalf("got member count %d, want 1", g.MemberCount)
	}
	note := h.message(t, g1, g.LastSeq).System
	if note.Kind != pb.SystemNote_LEFT || note.UserId != bob {
		t.Fatalf("got note %v, want LEFT by bob", note)
	}
	wantEvents(t, h.take(), "g1001 u[] note:LEFT", "g1001 u[10002] member:LEFT")
	if n := h.notices(t, bob); len(n) != notices {
		t.Fatalf("got %d notices, want %d: quitting leaves none", len(n), notices)
	}
	if got := h.mine(t, bob); len(got) != 0 {
		t.Fatalf("got bob's groups %v, want none", got)
	}
}

func TestFSM_Leave_Kick(t *testing.T) {
	h := newWorld(t)
	h.must(t, cmd(&pb.LeaveCmd{GroupId: g1, ActorId: alice, UserId: bob, UserName: "Bob"}))

	if m := h.member(t, g1, bob); m != nil {
		t.Fatalf("got member %v, want none", m)
	}
	g := h.group(t, g1)
	note := h.message(t, g1, g.LastSeq).System
	if g.MemberCount != 1 || note.Kind != pb.SystemNote_KICKED || note.UserId != bob {
		t.Fatalf("got count %d note %v, want 1 and KICKED bob", g.MemberCount, note)
	}
	evs := h.take()
	wantEvents(t, evs, "g1001 u[] note:KICKED", "g1001 u[] member:KICKED",
		"g0 u[10002] member:KICKED notice")
	wantNotice(t, h, bob, evs[2])
	if got := h.mine(t, bob); len(got) != 0 {
		t.Fatalf("got bob's groups %v, want none", got)
	}
}

func TestFSM_Dissolve_GoneAtOnce(t *testing.T) {
	h := newWorld(t)
	h.must(t, cmd(&pb.ApplyCmd{GroupId: g2, UserId: bob, PasswordOk: true, PasswordVersion: 1}))
	h.say(t, g1, bob, "hello")
	h.must(t, cmd(&pb.SendCmd{GroupId: g1, SenderId: bob, Text: "again", ClientMsgId: "c1"}))
	h.take()
	keep := h.dumpGroup(t, g2)

	res := h.must(t, cmd(&pb.DissolveCmd{GroupId: g1, ActorId: alice}))

	if res.GroupID != g1 || res.Group.GetName() != "one" {
		t.Fatalf("got result %d %v, want the group as it was", res.GroupID, res.Group)
	}
	if g := h.group(t, g1); g != nil {
		t.Fatalf("got group %v after dissolving it, want none", g)
	}
	sameState(t, h.dumpGroup(t, g2), keep)
	for _, uid := range []uint64{alice, bob} {
		if got := groupIDs(h.mine(t, uid)); slices.Contains(got, g1) {
			t.Fatalf("got user %d in groups %v, want %d gone", uid, got, g1)
		}
	}
	if got := h.public(t); len(got) != 0 {
		t.Fatalf("got public groups %v, want none", got)
	}
	if apps := h.apps(t, g1); len(apps) != 0 {
		t.Fatalf("got applications %v, want none", apps)
	}
	evs := h.take()
	wantEvents(t, evs, "g0 u[10002] dissolved notice", "g0 u[10004] decided:false notice")
	wantNotice(t, h, bob, evs[0])
	if d := evs[0].Event.GetDissolved(); d.GroupId != g1 || d.Name != "one" || d.ByUserId != alice {
		t.Fatalf("got %v, want group 1001 one by alice", d)
	}
	// The applicant learns that the application is refused, and why.
	wantNotice(t, h, dave, evs[1])
	d := evs[1].Event.GetDecided()
	if d.GroupId != g1 || d.GroupName != "one" || d.Approved ||
		d.Reason != pb.ApplicationDecided_DISSOLVED {
		t.Fatalf("got %v, want group 1001 one refused as dissolved", d)
	}
	if n := h.notices(t, alice); len(n) != 0 {
		t.Fatalf("got notices for the owner %v, want none", n)
	}

	// What the dissolve left, trim removes; g2 stays as it was.
	h.trimAll(t, &pb.TrimCmd{})
	if left := h.dumpGroup(t, g1); len(left) != 0 {
		t.Fatalf("got %q left of the group after trimming, want nothing", left)
	}
	sameState(t, h.dumpGroup(t, g2), keep)
}

func TestFSM_Transfer_SwapsRoles(t *testing.T) {
	h := newWorld(t)
	h.must(t, cmd(&pb.TransferCmd{GroupId: g1, ActorId: alice, ToId: bob, ToName: "Bob"}))

	g := h.group(t, g1)
	if g.OwnerId != bob {
		t.Fatalf("got owner %d, want %d", g.OwnerId, bob)
	}
	if a, b := h.member(t, g1, alice).Role, h.member(t, g1, bob).Role; a != pb.Role_ROLE_MEMBER ||
		b != pb.Role_ROLE_OWNER {
		t.Fatalf("got roles %v and %v, want member and owner", a, b)
	}
	note := h.message(t, g1, g.LastSeq).System
	if note.Kind != pb.SystemNote_OWNER_CHANGED || note.UserId != bob || note.Name != "Bob" {
		t.Fatalf("got note %v, want OWNER_CHANGED to Bob", note)
	}
	evs := h.take()
	wantEvents(t, evs, "g1001 u[] note:OWNER_CHANGED", "g1001 u[] group_changed")
	if info := evs[1].Event.GetGroupChanged(); info.OwnerId != bob || info.Members != nil {
		t.Fatalf("got %v, want owner bob and no members", info)
	}

	// The old owner may now leave; the new one must transfer first.
	h.must(t, cmd(&pb.LeaveCmd{GroupId: g1, ActorId: alice, UserId: alice}))
	wantCode(t, h.apply(t, cmd(&pb.LeaveCmd{GroupId: g1, ActorId: bob, UserId: bob})),
		pb.Code_OWNER_MUST_TRANSFER)
}

func TestFSM_UpdateGroup_Fields(t *testing.T) {
	tests := []struct {
		name    string
		cmd     *pb.UpdateGroupCmd
		check   func(t testing.TB, g *pb.Group)
		public  []uint64
		renamed bool
	}{
		{name: "rename", renamed: true, public: []uint64{g1},
			cmd:   &pb.UpdateGroupCmd{Name: proto.String("uno")},
			check: func(t testing.TB, g *pb.Group) { wantString(t, g.Name, "uno") }},
		{name: "same name", public: []uint64{g1},
			cmd:   &pb.UpdateGroupCmd{Name: proto.String("one")},
			check: func(t testing.TB, g *pb.Group) { wantString(t, g.Name, "one") }},
		{name: "description", public: []uint64{g1},
			cmd:   &pb.UpdateGroupCmd{Description: proto.String("new")},
			check: func(t testing.TB, g *pb.Group) { wantString(t, g.Description, "new") }},
		{name: "unlist", public: nil,
			cmd:   &pb.UpdateGroupCmd{Public: proto.Bool(false)},
			check: func(t testing.TB, g *pb.Group) { wantBool(t, g.Public, false) }},
		{name: "set password", public: []uint64{g1},
			cmd: &pb.UpdateGroupCmd{JoinPasswordHash: []byte("h")},
			check: func(t testing.TB, g *pb.Group) {
				wantString(t, string(g.JoinPasswordHash), "h")
				wantUint(t, g.PasswordVersion, 2)
			}},
		{name: "remove password", public: []uint64{g1},
			cmd: &pb.UpdateGroupCmd{JoinPasswordHash: []byte{}},
			check: func(t testing.TB, g *pb.Group) {
				wantString(t, string(g.JoinPasswordHash), "")
				wantUint(t, g.PasswordVersion, 2)
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newWorld(t)
			last := h.group(t, g1).LastSeq
			tc.cmd.GroupId, tc.cmd.ActorId = g1, alice

			res := h.must(t, cmd(tc.cmd))

			g := h.group(t, g1)
			tc.check(t, g)
			if !proto.Equal(res.Group, g) {
				t.Fatalf("got result group %v, want %v", res.Group, g)
			}
			if got := h.public(t); !slices.Equal(got, tc.public) {
				t.Fatalf("got public groups %v, want %v", got, tc.public)
			}
			want := []string{"g1001 u[] group_changed"}
			if tc.renamed {
				want = append([]string{"g1001 u[] note:RENAMED"}, want...)
				wantUint(t, g.LastSeq, last+1)
			} else {
				wantUint(t, g.LastSeq, last)
			}
			evs := h.take()
			wantEvents(t, evs, want...)
			info := evs[len(evs)-1].Event.GetGroupChanged()
			if !proto.Equal(info, GroupInfo(g, nil)) {
				t.Fatalf("got info %v, want %v", info, GroupInfo(g, nil))
			}
		})
	}
}

func TestFSM_UpdateGroup_PasswordInvalidatesChecks(t *testing.T) {
	h := newWorld(t)
	h.must(t, cmd(&pb.UpdateGroupCmd{GroupId: g2, ActorId: alice, JoinPasswordHash: []byte("h2")}))

	// A password checked against the old hash is stale now.
	wantCode(t, h.apply(t, cmd(&pb.ApplyCmd{GroupId: g2, UserId: carol, PasswordOk: true,
		PasswordVersion: 1})), pb.Code_WRONG_PASSWORD)
	h.must(t, cmd(&pb.ApplyCmd{GroupId: g2, UserId: carol, PasswordOk: true, PasswordVersion: 2}))

	// Without a password anyone may apply.
	h.must(t, cmd(&pb.UpdateGroupCmd{GroupId: g2, ActorId: alice, JoinPasswordHash: []byte{}}))
	h.must(t, cmd(&pb.ApplyCmd{GroupId: g2, UserId: dave}))
}

func TestFSM_Decide_MemberLimit(t *testing.T) {
	h := newWorld(t)
	h.must(t, cmd(&pb.ApplyCmd{GroupId: g1, UserId: carol}))
	decide := func(uid uint64) *Result {
		return h.apply(t, cmd(&pb.DecideCmd{GroupId: g1, OwnerId: alice, UserId: uid,
			Approve: true, Limits: &pb.GroupLimits{MaxMembers: 3}}))
	}
	wantCode(t, decide(dave), pb.Code_OK)
	wantCode(t, decide(carol), pb.Code_LIMIT_EXCEEDED)
	if apps := h.apps(t, g1); len(apps) != 1 || apps[0].UserId != carol {
		t.Fatalf("got applications %v, want carol's kept", apps)
	}
	// Denying needs no room.
	h.must(t, cmd(&pb.DecideCmd{GroupId: g1, OwnerId: alice, UserId: carol,
		Limits: &pb.GroupLimits{MaxMembers: 3}}))
}

// wantNotice checks that the event carries a notice ID naming the test
// shard and that the notice is stored for uid with the same event.
func wantNotice(t testing.TB, h *harness, uid uint64, e Event) {
	t.Helper()
	id := e.Event.GetNoticeId()
	if id&(1<<NoticeShardBits-1) != testShard {
		t.Fatalf("got notice id %#x, want shard %d in the low bits", id, testShard)
	}
	for _, n := range h.notices(t, uid) {
		if n.Id == id {
			if !proto.Equal(n.Event, e.Event) || n.TimeMs != h.now {
				t.Fatalf("got notice %v, want event %v at %d", n, e.Event, h.now)
			}
			return
		}
	}
	t.Fatalf("got no notice %#x for user %d", id, uid)
}

// dumpGroup lists the state lines of group-shard buckets that mention gid
// in a group ID position.
func (h *harness) dumpGroup(t testing.TB, gid uint64) []string {
	t.Helper()
	id := storage.U64(gid)
	var out []string
	h.view(t, func(tx *bolt.Tx) error {
		for _, b := range [][]byte{storage.Groups, storage.Members, storage.Apps,
			storage.Messages, storage.Dedup, storage.Public, storage.Purge, storage.Files,
			storage.Uploads} {
			for _, k := range keysWithPrefix(tx.Bucket(b), id) {
				out = append(out, string(b)+" "+string(k))
			}
		}
		c := tx.Bucket(storage.UserGroups).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if bytes.Equal(k[8:], id) {
				out = append(out, "user_groups "+string(k))
			}
		}
		return nil
	})
	return out
}

func (h *harness) apps(t testing.TB, gid uint64) []*pb.Application {
	t.Helper()
	var apps []*pb.Application
	h.view(t, func(tx *bolt.Tx) (err error) { apps, err = Applications(tx, gid, 0, 0); return err })
	return apps
}

func (h *harness) mine(t testing.TB, uid uint64) []*pb.GroupSummary {
	t.Helper()
	var gs []*pb.GroupSummary
	h.view(t, func(tx *bolt.Tx) (err error) { gs, err = GroupsOfUser(tx, uid); return err })
	return gs
}

func (h *harness) public(t testing.TB) []uint64 {
	t.Helper()
	var gs []*pb.Group
	h.view(t, func(tx *bolt.Tx) (err error) { gs, _, err = PublicGroups(tx, 0, 100); return err })
	var ids []uint64
	for _, g := range gs {
		ids = append(ids, g.Id)
	}
	return ids
}

func groupIDs(gs []*pb.GroupSummary) []uint64 {
	var ids []uint64
	for _, g := range gs {
		ids = append(ids, g.GroupId)
	}
	return ids
}

func wantString(t testing.TB, got, want string) {
	t.Helper()
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func wantUint(t testing.TB, got, want uint64) {
	t.Helper()
	if got != want {
		t.Fatalf("got %d, want %d", got, want)
	}
}

func wantBool(t testing.TB, got, want bool) {
	t.Helper()
	if got != want {
		t.Fatalf("got %t, want %t", got, want)
	}
}
