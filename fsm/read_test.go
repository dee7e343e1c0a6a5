package fsm

import (
	"fmt"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
)

// seqs lists the seqs of a page's messages.
func seqs(p *pb.MessagePage) []uint64 {
	var out []uint64
	for _, m := range p.GetMessages() {
		out = append(out, m.Seq)
	}
	return out
}

func span(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// pagedWorld is the world with 60 more messages in g1 (seqs 3..62) and a
// message in g2, whose keys follow g1's.
func pagedWorld(t testing.TB) *harness {
	h := newWorld(t)
	for i := range 60 {
		h.say(t, g1, bob, fmt.Sprint(i))
	}
	h.say(t, g2, alice, "other")
	return h
}

func TestHistory_Pages(t *testing.T) {
	h := pagedWorld(t)
	tests := []struct {
		name   string
		gid    uint64
		before uint64
		limit  int
		want   []uint64
		more   bool
	}{
		{"newest", g1, 0, 3, span(60, 62), true},
		{"before the middle", g1, 10, 4, span(6, 9), true},
		{"reaching the start", g1, 4, 10, span(1, 3), false},
		{"exactly to the start", g1, 4, 3, span(1, 3), false},
		{"before the first", g1, 1, 10, nil, false},
		{"past the end", g1, 1000, 2, span(61, 62), true},
		{"default limit", g1, 0, 0, span(13, 62), true},
		{"all", g1, 0, 100, span(1, 62), false},
		{"last group in the bucket", g2, 0, 5, span(1, 2), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p *pb.MessagePage
			h.view(t, func(tx *bolt.Tx) (err error) {
				p, err = History(tx, tc.gid, tc.before, tc.limit)
				return err
			})
			if got := seqs(p); !slices.Equal(got, tc.want) || p.More != tc.more {
				t.Fatalf("got %v more %t, want %v more %t", got, p.More, tc.want, tc.more)
			}
			if p.GroupId != tc.gid || p.LastSeq != h.group(t, tc.gid).LastSeq {
				t.Fatalf("got group %d last %d, want %d", p.GroupId, p.LastSeq, tc.gid)
			}
		})
	}
}

func TestSync_Pages(t *testing.T) {
	h := pagedWorld(t)
	tests := []struct {
		name  string
		gid   uint64
		after uint64
		limit int
		want  []uint64
		more  bool
	}{
		{"from the start", g1, 0, 4, span(1, 4), true},
		{"from the middle", g1, 30, 5, span(31, 35), true},
		{"to the end", g1, 58, 10, span(59, 62), false},
		{"exactly to the end", g1, 58, 4, span(59, 62), false},
		{"at the end", g1, 62, 10, nil, false},
		{"past the end", g1, 1 << 62, 10, nil, false},
		{"default limit", g1, 0, 0, span(1, 50), true},
		{"last group in the bucket", g2, 1, 5, span(2, 2), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p *pb.MessagePage
			h.view(t, func(tx *bolt.Tx) (err error) {
				p, err = Sync(tx, tc.gid, tc.after, tc.limit)
				return err
			})
			if got := seqs(p); !slices.Equal(got, tc.want) || p.More != tc.more {
				t.Fatalf("got %v more %t, want %v more %t", got, p.More, tc.want, tc.more)
			}
		})
	}
}

func TestPublicGroups_Pages(t *testing.T) {
	h := newFSM(t, KindGroup)
	for gid := uint64(1); gid <= 7; gid++ {
		h.must(t, cmd(&pb.CreateGroupCmd{GroupId: gid, OwnerId: alice, Name: fmt.Sprint(gid),
			Public: gid != 3 && gid != 6}))
	}
	tests := []struct {
		name  string
		after uint64
		limit int
		want  []uint64
		next  uint64
	}{
		{"first page", 0, 2, []uint64{1, 2}, 2},
		{"skips private", 2, 2, []uint64{4, 5}, 5},
		{"last page", 5, 2, []uint64{7}, 0},
		{"exact last page", 4, 2, []uint64{5, 7}, 0},
		{"after the last", 7, 2, nil, 0},
		{"after the largest ID", 1<<64 - 1, 2, nil, 0},
		{"default limit", 0, 0, []uint64{1, 2, 4, 5, 7}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var gs []*pb.Group
			var next uint64
			h.view(t, func(tx *bolt.Tx) (err error) {
				gs, next, err = PublicGroups(tx, tc.after, tc.limit)
				return err
			})
			var ids []uint64
			for _, g := range gs {
				ids = append(ids, g.Id)
			}
			if !slices.Equal(ids, tc.want) || next != tc.next {
				t.Fatalf("got %v next %d, want %v next %d", ids, next, tc.want, tc.next)
			}
		})
	}
}

func TestGroupInfo_HidesPassword(t *testing.T) {
	h := newWorld(t)
	var members []*pb.Member
	h.view(t, func(tx *bolt.Tx) (err error) { members, err = Members(tx, g2); return err })
	g := h.group(t, g2)

	info := GroupInfo(g, members)

	want := &pb.GroupInfo{GroupId: g2, Name: "two", OwnerId: alice, HasPassword: true,
		MemberCount: 1, LastSeq: 1, CreatedMs: startMs, Members: members}
	if !proto.Equal(info, want) {
		t.Fatalf("got %v, want %v", info, want)
	}
	if len(members) != 1 || members[0].UserId != alice {
		t.Fatalf("got members %v, want alice", members)
	}
	if GroupInfo(nil, nil) != nil {
		t.Fatalf("got info for a nil group, want nil")
	}
	if got := GroupInfo(h.group(t, g1), nil); got.HasPassword {
		t.Fatalf("got HasPassword for a group without one")
	}
}

func TestGroupsOfUser_Unread(t *testing.T) {
	h := newWorld(t)
	h.must(t, cmd(&pb.ApplyCmd{GroupId: g2, UserId: bob, PasswordOk: true, PasswordVersion: 1}))
	h.must(t, cmd(&pb.DecideCmd{GroupId: g2, OwnerId: alice, UserId: bob, Approve: true}))
	h.say(t, g1, alice, "a")
	h.say(t, g1, alice, "b")
	h.say(t, g2, bob, "c")

	got := h.mine(t, bob)

	want := []*pb.GroupSummary{
		{GroupId: g1, Name: "one", Role: pb.Role_ROLE_MEMBER, LastSeq: 4, ReadSeq: 1, Unread: 3},
		{GroupId: g2, Name: "two", Role: pb.Role_ROLE_MEMBER, LastSeq: 3, ReadSeq: 3},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("group %d: got %v, want %v", i, got[i], want[i])
		}
	}
	if s := h.mine(t, alice); len(s) != 2 || s[0].Role != pb.Role_ROLE_OWNER {
		t.Fatalf("got alice's groups %v, want two she owns", s)
	}
}

func TestRead_MissingIsNil(t *testing.T) {
	h := newWorld(t)
	h.view(t, func(tx *bolt.Tx) error {
		checks := map[string]func() (any, error){
			"user":     func() (any, error) { return GetUser(tx, 1) },
			"login":    func() (any, error) { return UserByLogin(tx, "x") },
			"session":  func() (any, error) { return GetSession(tx, []byte("x")) },
			"no token": func() (any, error) { return GetSession(tx, nil) },
			"group":    func() (any, error) { return GetGroup(tx, 9) },
			"member":   func() (any, error) { return GetMember(tx, g1, carol) },
			"history":  func() (any, error) { return History(tx, 9, 0, 10) },
			"sync":     func() (any, error) { return Sync(tx, 9, 0, 10) },
		}
		for name, get := range checks {
			v, err := get()
			if err != nil {
				t.Fatalf("%s: got error %v, want none", name, err)
			}
			if !isNil(v) {
				t.Fatalf("%s: got %v, want nil", name, v)
			}
		}
		for name, n := range map[string]int{
			"members": len(must(Members(tx, 9))),
			"apps":    len(must(Applications(tx, g2, 0, 0))),
			"groups":  len(must(GroupsOfUser(tx, carol))),
			"notices": len(must(Notices(tx, carol, 0, 0))),
			"owned":   OwnedCount(tx, carol),
		} {
			if n != 0 {
				t.Fatalf("%s: got %d, want 0", name, n)
			}
		}
		return nil
	})
}

func isNil(v any) bool {
	switch x := v.(type) {
	case *pb.User:
		return x == nil
	case *pb.Session:
		return x == nil
	case *pb.Group:
		return x == nil
	case *pb.Member:
		return x == nil
	case *pb.MessagePage:
		return x == nil
	}
	return v == nil
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
