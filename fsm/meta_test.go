package fsm

import (
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
)

// newMeta is a meta shard with users Alice (10001) and bob (10002), and a
// session "a1" of Alice's expiring at startMs+1000.
func newMeta(t testing.TB) *harness {
	t.Helper()
	h := newFSM(t, KindMeta)
	h.must(t, cmd(&pb.RegisterCmd{LoginName: "Alice", PasswordHash: []byte("pa")}))
	h.must(t, cmd(&pb.RegisterCmd{LoginName: "bob", PasswordHash: []byte("pb"),
		DisplayName: "Bobby"}))
	h.must(t, cmd(&pb.CreateSessionCmd{UserId: alice, CredVersion: 1, TokenHash: []byte("a1"),
		ExpiresMs: startMs + 1000}))
	h.take()
	return h
}

func (h *harness) user(t testing.TB, uid uint64) *pb.User {
	t.Helper()
	var u *pb.User
	h.view(t, func(tx *bolt.Tx) (err error) { u, err = GetUser(tx, uid); return err })
	return u
}

func (h *harness) session(t testing.TB, hash string) *pb.Session {
	t.Helper()
	var s *pb.Session
	h.view(t, func(tx *bolt.Tx) (err error) { s, err = GetSession(tx, []byte(hash)); return err })
	return s
}

func (h *harness) owned(t testing.TB, uid uint64) int {
	t.Helper()
	var n int
	h.view(t, func(tx *bolt.Tx) error { n = OwnedCount(tx, uid); return nil })
	return n
}

func TestFSM_Meta_Refused(t *testing.T) {
	runRefusals(t, newMeta, []refusal{
		{name: "register same name", want: pb.Code_NAME_TAKEN,
			cmd: cmd(&pb.RegisterCmd{LoginName: "Alice"})},
		{name: "register name in other case", want: pb.Code_NAME_TAKEN,
			cmd: cmd(&pb.RegisterCmd{LoginName: "aLiCe"})},
		{name: "register upper case of lower", want: pb.Code_NAME_TAKEN,
			cmd: cmd(&pb.RegisterCmd{LoginName: "BOB"})},
		{name: "register empty name", want: pb.Code_INVALID_ARGUMENT,
			cmd: cmd(&pb.RegisterCmd{})},
		{name: "register oversized name", want: pb.Code_TOO_LONG,
			cmd: cmd(&pb.RegisterCmd{LoginName: string(make([]byte, bolt.MaxKeySize))})},
		{name: "session unknown user", want: pb.Code_NOT_FOUND,
			cmd: cmd(&pb.CreateSessionCmd{UserId: 99, CredVersion: 1, TokenHash: []byte("x")})},
		{name: "session stale credential", want: pb.Code_WRONG_PASSWORD,
			cmd: cmd(&pb.CreateSessionCmd{UserId: bob, CredVersion: 2, TokenHash: []byte("x")})},
		{name: "session empty token", want: pb.Code_INVALID_ARGUMENT,
			cmd: cmd(&pb.CreateSessionCmd{UserId: bob, CredVersion: 1})},
		{name: "session token of another user", want: pb.Code_INTERNAL,
			cmd: cmd(&pb.CreateSessionCmd{UserId: bob, CredVersion: 1, TokenHash: []byte("a1")})},
		{name: "change password unknown user", want: pb.Code_NOT_FOUND,
			cmd: cmd(&pb.ChangePasswordCmd{UserId: 99, CredVersion: 1, NewTokenHash: []byte("x")})},
		{name: "change password stale credential", want: pb.Code_WRONG_PASSWORD,
			cmd: cmd(&pb.ChangePasswordCmd{UserId: alice, CredVersion: 7,
				NewTokenHash: []byte("x")})},
		{name: "update unknown user", want: pb.Code_NOT_FOUND,
			cmd: cmd(&pb.UpdateProfileCmd{UserId: 99, Location: proto.String("x")})},
		{name: "reserve over limit", want: pb.Code_LIMIT_EXCEEDED,
			setup: func(t testing.TB, h *harness) {
				h.must(t, cmd(&pb.ReserveGroupCmd{OwnerId: alice, MaxOwned: 1}))
			},
			cmd: cmd(&pb.ReserveGroupCmd{OwnerId: alice, RequestKey: "k", MaxOwned: 1})},
		{name: "move to owner at limit", want: pb.Code_LIMIT_EXCEEDED,
			setup: func(t testing.TB, h *harness) {
				h.must(t, cmd(&pb.ReserveGroupCmd{OwnerId: alice}))
				h.must(t, cmd(&pb.ReserveGroupCmd{OwnerId: bob}))
			},
			cmd: cmd(&pb.MoveOwnershipCmd{FromId: alice, ToId: bob, GroupId: 1001, MaxOwned: 1})},
		{name: "group command on meta shard", want: pb.Code_INTERNAL,
			cmd: cmd(&pb.SendCmd{GroupId: g1, SenderId: alice, Text: "x"})},
		{name: "empty command", want: pb.Code_INTERNAL, cmd: &pb.Command{}},
	})
}

func TestFSM_Register_Stores(t *testing.T) {
	h := newMeta(t)
	res := h.must(t, cmd(&pb.RegisterCmd{LoginName: "Carol", PasswordHash: []byte("pc"),
		Sex: pb.Sex_SEX_FEMALE, Location: "Oslo", Description: "d"}))

	if res.UserID != carol {
		t.Fatalf("got user id %d, want %d", res.UserID, carol)
	}
	want := &pb.User{Id: carol, LoginName: "Carol", PasswordHash: []byte("pc"), CredVersion: 1,
		DisplayName: "Carol", Sex: pb.Sex_SEX_FEMALE, Location: "Oslo", Description: "d",
		CreatedMs: startMs}
	if got := h.user(t, carol); !proto.Equal(got, want) {
		t.Fatalf("got user %v, want %v", got, want)
	}
	if !proto.Equal(res.User, want) {
		t.Fatalf("got result user %v, want %v", res.User, want)
	}
	if got := h.user(t, bob).DisplayName; got != "Bobby" {
		t.Fatalf("got display name %q, want %q", got, "Bobby")
	}
}

func TestFSM_UserByLogin_Folds(t *testing.T) {
	h := newMeta(t)
	for _, name := range []string{"Alice", "alice", "ALICE"} {
		t.Run(name, func(t *testing.T) {
			var u *pb.User
			h.view(t, func(tx *bolt.Tx) (err error) { u, err = UserByLogin(tx, name); return err })
			if u.GetId() != alice {
				t.Fatalf("got user %d, want %d", u.GetId(), alice)
			}
		})
	}
	var u *pb.User
	h.view(t, func(tx *bolt.Tx) (err error) { u, err = UserByLogin(tx, "nobody"); return err })
	if u != nil {
		t.Fatalf("got %v, want nil", u)
	}
}

func TestFSM_CreateSession_Stores(t *testing.T) {
	h := newMeta(t)
	res := h.must(t, cmd(&pb.CreateSessionCmd{UserId: bob, CredVersion: 1,
		TokenHash: []byte("b1"), ExpiresMs: startMs + 50}))

	if res.UserID != bob || res.User.GetLoginName() != "bob" {
		t.Fatalf("got result %d %v, want user bob", res.UserID, res.User)
	}
	want := &pb.Session{UserId: bob, CreatedMs: startMs, ExpiresMs: startMs + 50}
	if got := h.session(t, "b1"); !proto.Equal(got, want) {
		t.Fatalf("got session %v, want %v", got, want)
	}

	// A retried proposal of the same login lands once.
	before := h.dump(t, false)
	res = h.must(t, cmd(&pb.CreateSessionCmd{UserId: bob, CredVersion: 1,
		TokenHash: []byte("b1"), ExpiresMs: startMs + 50}))
	if !res.Existing {
		t.Fatalf("got Existing false on retry, want true")
	}
	sameState(t, h.dump(t, false), before)
}

func TestFSM_DeleteSession_Revokes(t *testing.T) {
	tests := []struct {
		name   string
		token  string
		events []string
	}{
		{"existing", "a1", []string{"g0 u[10001] none revoke"}},
		{"missing", "zz", nil},
		{"empty", "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newMeta(t)
			wantCode(t, h.apply(t, cmd(&pb.DeleteSessionCmd{TokenHash: []byte(tc.token)})),
				pb.Code_OK)
			evs := h.take()
			wantEvents(t, evs, tc.events...)
			if len(evs) > 0 && string(evs[0].RevokeToken) != tc.token {
				t.Fatalf("got revoke token %q, want %q", evs[0].RevokeToken, tc.token)
			}
			if s := h.session(t, "a1"); (s == nil) != (tc.token == "a1") {
				t.Fatalf("got session a1 %v after deleting %q", s, tc.token)
			}
		})
	}
	h := newMeta(t)
	h.must(t, cmd(&pb.DeleteSessionCmd{TokenHash: []byte("a1")}))
	for _, l := range h.dump(t, false) {
		if len(l) > 13 && l[:13] == "user_sessions" {
			t.Fatalf("got %q left, want no user session", l)
		}
	}
}

func TestFSM_ChangePassword_RevokesAll(t *testing.T) {
	h := newMeta(t)
	h.must(t, cmd(&pb.CreateSessionCmd{UserId: alice, CredVersion: 1, TokenHash: []byte("a2")}))
	h.must(t, cmd(&pb.CreateSessionCmd{UserId: bob, CredVersion: 1, TokenHash: []byte("b1")}))
	h.take()

	res := h.must(t, cmd(&pb.ChangePasswordCmd{UserId: alice, CredVersion: 1,
		PasswordHash: []byte("new"), NewTokenHash: []byte("a3"), ExpiresMs: startMs + 9}))

	if u := res.User; u.CredVersion != 2 || string(u.PasswordHash) != "new" {
		t.Fatalf("got cred version %d hash %q, want 2 %q", u.CredVersion, u.PasswordHash, "new")
	}
	if got := h.user(t, alice).CredVersion; got != 2 {
		t.Fatalf("got stored cred version %d, want 2", got)
	}
	for token, want := range map[string]bool{"a1": false, "a2": false, "a3": true, "b1": true} {
		if got := h.session(t, token) != nil; got != want {
			t.Fatalf("session %s exists: got %t, want %t", token, got, want)
		}
	}
	evs := h.take()
	wantEvents(t, evs, "g0 u[10001] none revoke")
	if string(evs[0].KeepToken) != "a3" || evs[0].RevokeToken != nil {
		t.Fatalf("got keep %q revoke %q, want keep a3", evs[0].KeepToken, evs[0].RevokeToken)
	}

	// A login whose password was checked before the change is refused.
	wantCode(t, h.apply(t, cmd(&pb.CreateSessionCmd{UserId: alice, CredVersion: 1,
		TokenHash: []byte("a4")})), pb.Code_WRONG_PASSWORD)
	h.must(t, cmd(&pb.CreateSessionCmd{UserId: alice, CredVersion: 2, TokenHash: []byte("a4")}))
}

func TestFSM_UpdateProfile_SetsPresentFields(t *testing.T) {
	h := newMeta(t)
	sex := pb.Sex_SEX_MALE
	res := h.must(t, cmd(&pb.UpdateProfileCmd{UserId: bob, Sex: &sex,
		Location: proto.String("Rome"), Description: proto.String("")}))

	u := h.user(t, bob)
	if u.DisplayName != "Bobby" || u.Sex != sex || u.Location != "Rome" || u.Description != "" {
		t.Fatalf("got %v, want display Bobby, male, Rome", u)
	}
	if !proto.Equal(res.User, u) {
		t.Fatalf("got result user %v, want %v", res.User, u)
	}
	h.must(t, cmd(&pb.UpdateProfileCmd{UserId: bob, DisplayName: proto.String("B")}))
	if u := h.user(t, bob); u.DisplayName != "B" || u.Location != "Rome" {
		t.Fatalf("got %v, want display B in Rome", u)
	}
}

func TestFSM_ReserveGroup_Idempotent(t *testing.T) {
	h := newMeta(t)
	reserve := func(owner uint64, key string) *Result {
		return h.apply(t, cmd(&pb.ReserveGroupCmd{OwnerId: owner, RequestKey: key, MaxOwned: 2}))
	}
	tests := []struct {
		name     string
		owner    uint64
		key      string
		code     pb.Code
		gid      uint64
		existing bool
	}{
		{"first", alice, "k1", pb.Code_OK, 1001, false},
		{"retry", alice, "k1", pb.Code_OK, 1001, true},
		{"same key other owner", bob, "k1", pb.Code_OK, 1002, false},
		{"no key", alice, "", pb.Code_OK, 1003, false},
		{"over limit", alice, "k2", pb.Code_LIMIT_EXCEEDED, 0, false},
		{"retry at limit", alice, "k1", pb.Code_OK, 1001, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := reserve(tc.owner, tc.key)
			wantCode(t, res, tc.code)
			if res.GroupID != tc.gid || res.Existing != tc.existing {
				t.Fatalf("got gid %d existing %t, want %d %t",
					res.GroupID, res.Existing, tc.gid, tc.existing)
			}
		})
	}
	if a, b := h.owned(t, alice), h.owned(t, bob); a != 2 || b != 1 {
		t.Fatalf("got owned %d and %d, want 2 and 1", a, b)
	}
}

func TestFSM_ReleaseGroup_Uncounts(t *testing.T) {
	h := newMeta(t)
	gid := h.must(t, cmd(&pb.ReserveGroupCmd{OwnerId: alice, RequestKey: "k", MaxOwned: 1})).GroupID

	h.must(t, cmd(&pb.ReleaseGroupCmd{OwnerId: alice, GroupId: gid}))
	if n := h.owned(t, alice); n != 0 {
		t.Fatalf("got owned %d, want 0", n)
	}
	// The reservation went with it: the same key now makes a new group.
	res := h.must(t, cmd(&pb.ReserveGroupCmd{OwnerId: alice, RequestKey: "k", MaxOwned: 1}))
	if res.GroupID == gid || res.Existing {
		t.Fatalf("got gid %d existing %t, want a new group", res.GroupID, res.Existing)
	}
	h.must(t, cmd(&pb.ReleaseGroupCmd{OwnerId: alice, GroupId: 4242}))
}

func TestFSM_MoveOwnership_Moves(t *testing.T) {
	h := newMeta(t)
	gid := h.must(t, cmd(&pb.ReserveGroupCmd{OwnerId: alice, RequestKey: "k"})).GroupID
	move := cmd(&pb.MoveOwnershipCmd{FromId: alice, ToId: bob, GroupId: gid, MaxOwned: 1})

	if res := h.must(t, move); res.Existing {
		t.Fatalf("got Existing on first move, want false")
	}
	if a, b := h.owned(t, alice), h.owned(t, bob); a != 0 || b != 1 {
		t.Fatalf("got owned %d and %d, want 0 and 1", a, b)
	}
	// A retry is not counted against bob's limit a second time.
	if res := h.must(t, move); !res.Existing {
		t.Fatalf("got Existing false on retry, want true")
	}
	res := h.must(t, cmd(&pb.ReserveGroupCmd{OwnerId: alice, RequestKey: "k"}))
	if res.GroupID == gid {
		t.Fatalf("got moved group %d for alice's old key, want a new one", gid)
	}
}

func TestFSM_PruneSessions_DeletesExpired(t *testing.T) {
	h := newMeta(t)
	for token, exp := range map[string]int64{"b1": startMs - 1, "b2": startMs + 5000,
		"b3": startMs + 1000} {
		h.must(t, cmd(&pb.CreateSessionCmd{UserId: bob, CredVersion: 1, TokenHash: []byte(token),
			ExpiresMs: exp}))
	}
	prune := cmd(&pb.PruneSessionsCmd{})
	prune.TimeMs = startMs + 1000
	h.must(t, prune)

	// a1 and b3 expire exactly at the prune time.
	for token, want := range map[string]bool{"a1": false, "b1": false, "b2": true, "b3": false} {
		if got := h.session(t, token) != nil; got != want {
			t.Fatalf("session %s exists: got %t, want %t", token, got, want)
		}
	}
	var n int
	for _, l := range h.dump(t, false) {
		if len(l) > 13 && l[:13] == "user_sessions" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("got %d user session keys, want 1", n)
	}
}

func TestFSM_SessionsExpired(t *testing.T) {
	h := newMeta(t) // a1 expires at startMs+1000
	tests := []struct {
		name string
		now  int64
		want bool
	}{
		{"before", startMs + 999, false},
		{"at expiry", startMs + 1000, true},
		{"after", startMs + 5000, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got bool
			h.view(t, func(tx *bolt.Tx) (err error) {
				got, err = SessionsExpired(tx, tc.now)
				return err
			})
			if got != tc.want {
				t.Fatalf("got %t, want %t", got, tc.want)
			}
		})
	}
}
