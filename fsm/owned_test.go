package fsm

import (
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
)

// ownershipGrace is the grace period the reconciliation tests run with.
const ownershipGrace = 60_000

// entries reads the owners the meta shard records for gid.
func (h *harness) entries(t testing.TB, gid uint64) []*pb.OwnedEntry {
	t.Helper()
	var es []*pb.OwnedEntry
	h.view(t, func(tx *bolt.Tx) error { es = ownedEntries(tx, gid); return nil })
	return es
}

// fixOf is the fix a reconciler would propose for gid now, given the
// owner its group shard holds.
func (h *harness) fixOf(t testing.TB, gid, owner uint64) *pb.OwnedFix {
	return &pb.OwnedFix{GroupId: gid, OwnerId: owner, Seen: h.entries(t, gid)}
}

func reconcile(now int64, fixes ...*pb.OwnedFix) *pb.Command {
	c := cmd(&pb.ReconcileOwnedCmd{GraceMs: ownershipGrace, Fixes: fixes})
	c.TimeMs = now
	return c
}

func TestFSM_ReconcileOwned(t *testing.T) {
	const gid = 1001
	reserve := func(t testing.TB, h *harness) {
		h.must(t, cmd(&pb.ReserveGroupCmd{OwnerId: alice, RequestKey: "k"}))
	}
	moved := func(t testing.TB, h *harness) {
		reserve(t, h)
		h.must(t, cmd(&pb.MoveOwnershipCmd{FromId: alice, ToId: bob, GroupId: gid}))
	}
	late := int64(startMs + ownershipGrace + 1)
	tests := []struct {
		name    string
		setup   func(testing.TB, *harness)
		fix     func(testing.TB, *harness) *pb.OwnedFix
		now     int64
		owners  []uint64 // recorded for gid afterwards
		changed uint64
	}{
		{name: "create never finished", setup: reserve, now: late, changed: 1,
			fix: func(t testing.TB, h *harness) *pb.OwnedFix { return h.fixOf(t, gid, 0) }},
		{name: "create within grace", setup: reserve, now: startMs + ownershipGrace - 1,
			owners: []uint64{alice},
			fix:    func(t testing.TB, h *harness) *pb.OwnedFix { return h.fixOf(t, gid, 0) }},
		{name: "transfer never finished", setup: moved, now: late, changed: 1,
			owners: []uint64{alice},
			fix:    func(t testing.TB, h *harness) *pb.OwnedFix { return h.fixOf(t, gid, alice) }},
		{name: "no entry for a group", now: late, changed: 1, owners: []uint64{bob},
			fix: func(t testing.TB, h *harness) *pb.OwnedFix { return h.fixOf(t, gid, bob) }},
		{name: "records agree", setup: reserve, now: late, owners: []uint64{alice},
			fix: func(t testing.TB, h *harness) *pb.OwnedFix { return h.fixOf(t, gid, alice) }},
		{name: "entry rewritten since read", setup: reserve, now: late, owners: []uint64{alice},
			fix: func(t testing.TB, h *harness) *pb.OwnedFix {
				fix := h.fixOf(t, gid, 0)
				h.now = late - ownershipGrace // a retry, long after the first try
				h.must(t, cmd(&pb.ReserveGroupCmd{OwnerId: alice, RequestKey: "k"}))
				return fix
			}},
		{name: "entry added since read", now: late, owners: []uint64{alice},
			fix: func(t testing.TB, h *harness) *pb.OwnedFix {
				fix := h.fixOf(t, gid, 0)
				reserve(t, h)
				return fix
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newMeta(t)
			if tc.setup != nil {
				tc.setup(t, h)
			}
			fix := tc.fix(t, h)

			res := h.must(t, reconcile(tc.now, fix))

			if res.Count != tc.changed {
				t.Fatalf("got %d groups changed, want %d", res.Count, tc.changed)
			}
			var got []uint64
			for _, e := range h.entries(t, gid) {
				got = append(got, e.OwnerId)
			}
			if !slices.Equal(got, tc.owners) {
				t.Fatalf("got owners %v, want %v", got, tc.owners)
			}
			for _, uid := range []uint64{alice, bob} {
				want := 0
				if len(tc.owners) == 1 && tc.owners[0] == uid {
					want = 1
				}
				if n := h.owned(t, uid); n != want {
					t.Fatalf("got user %d owning %d groups, want %d", uid, n, want)
				}
			}
		})
	}
}

// TestFSM_ReconcileOwned_DropsReservation shows that a create that never
// finished, once reconciled, no longer hands its group ID to a retry.
func TestFSM_ReconcileOwned_DropsReservation(t *testing.T) {
	h := newMeta(t)
	gid := h.must(t, cmd(&pb.ReserveGroupCmd{OwnerId: alice, RequestKey: "k"})).GroupID
	h.must(t, reconcile(startMs+ownershipGrace+1, h.fixOf(t, gid, 0)))

	res := h.must(t, cmd(&pb.ReserveGroupCmd{OwnerId: alice, RequestKey: "k"}))
	if res.Existing || res.GroupID == gid {
		t.Fatalf("got group %d existing %t, want a new one", res.GroupID, res.Existing)
	}
}

func TestFSM_ReconcileOwned_RefreshedByRetry(t *testing.T) {
	h := newMeta(t)
	h.must(t, cmd(&pb.ReserveGroupCmd{OwnerId: alice, RequestKey: "k"}))
	first := h.entries(t, 1001)
	h.now += 5
	h.must(t, cmd(&pb.ReserveGroupCmd{OwnerId: alice, RequestKey: "k"}))
	again := h.entries(t, 1001)
	if len(again) != 1 || again[0].TimeMs != first[0].TimeMs+5 || again[0].Index <= first[0].Index {
		t.Fatalf("got entries %v after a retry, want %v refreshed", again, first)
	}
	h.must(t, cmd(&pb.MoveOwnershipCmd{FromId: alice, ToId: bob, GroupId: 1001}))
	moved := h.entries(t, 1001)
	h.must(t, cmd(&pb.MoveOwnershipCmd{FromId: alice, ToId: bob, GroupId: 1001}))
	if got := h.entries(t, 1001); got[0].Index <= moved[0].Index {
		t.Fatalf("got entries %v after a retried move, want %v refreshed", got, moved)
	}
}

func TestOwnershipFixes(t *testing.T) {
	entry := func(owner uint64, ms int64) *pb.OwnedEntry {
		return &pb.OwnedEntry{OwnerId: owner, TimeMs: ms, Index: 7}
	}
	const cutoff = 100
	tests := []struct {
		name   string
		owned  map[uint64][]*pb.OwnedEntry
		owners map[uint64]uint64
		want   []*pb.OwnedFix
	}{
		{name: "agree", owned: map[uint64][]*pb.OwnedEntry{1: {entry(alice, 5)}},
			owners: map[uint64]uint64{1: alice}},
		{name: "group gone", owned: map[uint64][]*pb.OwnedEntry{1: {entry(alice, 5)}},
			want: []*pb.OwnedFix{{GroupId: 1, Seen: []*pb.OwnedEntry{entry(alice, 5)}}}},
		{name: "group gone, entry recent",
			owned: map[uint64][]*pb.OwnedEntry{1: {entry(alice, cutoff+1)}}},
		{name: "other owner", owned: map[uint64][]*pb.OwnedEntry{1: {entry(bob, cutoff)}},
			owners: map[uint64]uint64{1: alice},
			want: []*pb.OwnedFix{{GroupId: 1, OwnerId: alice,
				Seen: []*pb.OwnedEntry{entry(bob, cutoff)}}}},
		{name: "two owners",
			owned:  map[uint64][]*pb.OwnedEntry{1: {entry(alice, 1), entry(bob, 2)}},
			owners: map[uint64]uint64{1: alice},
			want: []*pb.OwnedFix{{GroupId: 1, OwnerId: alice,
				Seen: []*pb.OwnedEntry{entry(alice, 1), entry(bob, 2)}}}},
		{name: "no entry, in group order", owners: map[uint64]uint64{9: bob, 3: alice},
			want: []*pb.OwnedFix{{GroupId: 3, OwnerId: alice}, {GroupId: 9, OwnerId: bob}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := OwnershipFixes(tc.owned, tc.owners, cutoff)
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if !proto.Equal(got[i], tc.want[i]) {
					t.Fatalf("fix %d: got %v, want %v", i, got[i], tc.want[i])
				}
			}
		})
	}
}
