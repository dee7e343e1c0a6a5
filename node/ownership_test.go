package node

import (
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/schat/schat/fsm"
	pb "github.com/schat/schat/proto"
)

// ownersOf lists the owners the meta shard records for group gid.
func ownersOf(t testing.TB, n *Node, gid uint64) []uint64 {
	t.Helper()
	var out []uint64
	n.shards[metaShard].fsm.View(func(tx *bolt.Tx) error {
		for _, e := range fsm.OwnedInRange(tx, gid, gid+1)[gid] {
			out = append(out, e.OwnerId)
		}
		return nil
	})
	return out
}

// ownedCount is how many groups the meta shard counts against uid.
func ownedCount(t testing.TB, n *Node, uid uint64) int {
	t.Helper()
	var c int
	n.shards[metaShard].fsm.View(func(tx *bolt.Tx) error {
		c = fsm.OwnedCount(tx, uid)
		return nil
	})
	return c
}

// wantOwners fails unless the meta shard records exactly want for gid.
func wantOwners(t testing.TB, n *Node, gid uint64, want ...uint64) {
	t.Helper()
	if got := ownersOf(t, n, gid); !slices.Equal(got, want) {
		t.Fatalf("group %d: got owners %v recorded, want %v", gid, got, want)
	}
}

// reconcileQuiet runs a reconciliation pass at now and fails if it
// proposed anything to the meta shard.
func reconcileQuiet(t testing.TB, n *Node, now time.Time) {
	t.Helper()
	before := n.shards[metaShard].fsm.AppliedIndex()
	n.reconcileOwnership(now)
	if got := n.shards[metaShard].fsm.AppliedIndex(); got != before {
		t.Fatalf("reconciliation moved the meta shard from %d to %d, want nothing proposed",
			before, got)
	}
}

// TestNode_ReconcileOwnership_HealsCrashWindows leaves each two-step
// operation after its first step, as a crash would, and shows the
// reconciler leaving them alone within the grace period and correcting
// the meta shard's record after it.
func TestNode_ReconcileOwnership_HealsCrashWindows(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.MaxOwnedGroups = 2
	n := startNode(t, cfg)
	ctx := ctxT(t)
	alice, al := user(t, n.ClientAddr(), false, "alice")
	bob, bl := user(t, n.ClientAddr(), false, "bob")
	aid, bid := al.User.UserId, bl.User.UserId
	exec := func(shard uint32, cmd *pb.Command) *fsm.Result {
		t.Helper()
		return must(n.exec(ctx, nil, shard, cmd))(t)
	}

	// A create that reserved its ID and never created the group.
	leaked := exec(metaShard, &pb.Command{Op: &pb.Command_ReserveGroup{
		ReserveGroup: &pb.ReserveGroupCmd{OwnerId: aid, MaxOwned: 2}}}).GroupID
	// A transfer that moved the record and never the group.
	g1 := must(alice.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "one"}))(t).GroupId
	must(bob.ApplyGroup(ctx, g1, "", ""))(t)
	if err := alice.Decide(ctx, g1, bid, true); err != nil {
		t.Fatal(err)
	}
	exec(metaShard, &pb.Command{Op: &pb.Command_MoveOwnership{MoveOwnership: &pb.MoveOwnershipCmd{
		FromId: aid, ToId: bid, GroupId: g1, MaxOwned: 2}}})
	// A dissolve that deleted the group and never released the record.
	g2 := must(bob.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "two"}))(t).GroupId
	exec(n.shardOf(g2), &pb.Command{Op: &pb.Command_Dissolve{Dissolve: &pb.DissolveCmd{
		GroupId: g2, ActorId: bid}}})

	wantOwners(t, n, leaked, aid)
	wantOwners(t, n, g1, bid)
	wantOwners(t, n, g2, bid)
	must(alice.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "three"}))(t)
	_, err := alice.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "four"})
	wantCode(t, err, pb.Code_LIMIT_EXCEEDED) // the leaked reservation counts

	// Within the grace period the steps may still be on their way.
	reconcileQuiet(t, n, time.Now())
	wantOwners(t, n, leaked, aid)

	n.reconcileOwnership(time.Now().Add(cfg.Ownership.Grace + time.Second))

	wantOwners(t, n, leaked)
	wantOwners(t, n, g1, aid)
	wantOwners(t, n, g2)
	if a, b := ownedCount(t, n, aid), ownedCount(t, n, bid); a != 2 || b != 0 {
		t.Fatalf("got alice owning %d and bob %d, want 2 and 0", a, b)
	}
	must(bob.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "bob's"}))(t)
	reconcileQuiet(t, n, time.Now().Add(cfg.Ownership.Grace+time.Second))
}

// TestNode_Ownership_NormalPathsExact runs create, a retried create,
// transfer and dissolve through the client and finds the record exact,
// with nothing for the reconciler to do.
func TestNode_Ownership_NormalPathsExact(t *testing.T) {
	n := startNode(t, testConfig(t))
	ctx := ctxT(t)
	alice, al := user(t, n.ClientAddr(), false, "alice")
	bob, bl := user(t, n.ClientAddr(), false, "bob")
	aid, bid := al.User.UserId, bl.User.UserId

	req := &pb.CreateGroupRequest{Name: "kept"}
	kept := must(alice.CreateGroup(ctx, req))(t).GroupId
	if req.RequestKey == "" {
		t.Fatalf("got no request key set on the create request, want one")
	}
	if again := must(alice.CreateGroup(ctx, req))(t).GroupId; again != kept {
		t.Fatalf("retried create got group %d, want %d", again, kept)
	}
	moved := must(alice.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "moved"}))(t).GroupId
	must(bob.ApplyGroup(ctx, moved, "", ""))(t)
	if err := alice.Decide(ctx, moved, bid, true); err != nil {
		t.Fatal(err)
	}
	if err := alice.Transfer(ctx, moved, bid); err != nil {
		t.Fatal(err)
	}
	gone := must(bob.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "gone"}))(t).GroupId
	if err := bob.Dissolve(ctx, gone); err != nil {
		t.Fatal(err)
	}

	wantOwners(t, n, kept, aid)
	wantOwners(t, n, moved, bid)
	wantOwners(t, n, gone)
	if a, b := ownedCount(t, n, aid), ownedCount(t, n, bid); a != 1 || b != 1 {
		t.Fatalf("got alice owning %d and bob %d, want 1 and 1", a, b)
	}
	reconcileQuiet(t, n, time.Now().Add(n.cfg.Ownership.Grace+time.Second))
}
