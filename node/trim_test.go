package node

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/storage"
	"github.com/schat/schat/transport"
)

// TestNode_Retention_KeepsNewest runs the retention limit through a real
// node: the trim loop removes the oldest messages, and history, sync and
// a returning member's unread count start at the first kept.
func TestNode_Retention_KeepsNewest(t *testing.T) {
	const keep = 5
	cfg := testConfig(t)
	cfg.Retention.MaxMessages = keep
	cfg.Retention.Interval = 20 * time.Millisecond
	n := startNode(t, cfg)
	ctx := ctxT(t)
	alice, _ := user(t, n.ClientAddr(), false, "alice")
	bob, bl := user(t, n.ClientAddr(), false, "bob")
	gid := must(alice.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "short memory"}))(t).GroupId
	must(bob.ApplyGroup(ctx, gid, "", ""))(t)
	if err := alice.Decide(ctx, gid, bl.User.UserId, true); err != nil {
		t.Fatal(err)
	}
	if err := bob.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	var last uint64
	for i := range 20 {
		last = must(alice.Send(ctx, gid, fmt.Sprint("m", i), fmt.Sprint("c", i)))(t).Seq
	}

	first := last - keep + 1
	waitUntil(t, "trim to the newest messages", func() bool {
		return must(alice.History(ctx, gid, 0, 100))(t).FirstSeq == first
	})

	h := must(alice.History(ctx, gid, 0, 100))(t)
	if got := msgSeqs(h); !slices.Equal(got, seqRange(first, last)) || h.More {
		t.Fatalf("got history %v more %t, want %d..%d and no more", got, h.More, first, last)
	}
	bl2 := must(bob.Login(ctx, "bob", "pw-bob"))(t)
	if got := bl2.Limits.RetentionMaxMessages; got != keep {
		t.Fatalf("got retention of %d messages announced at login, want %d", got, keep)
	}
	if s := bl2.Groups[0]; s.Unread != keep {
		t.Fatalf("got %d unread for bob, want the %d kept", s.Unread, keep)
	}
	p := must(bob.Sync(ctx, gid, 0, 2, true))(t)
	if got := msgSeqs(p); !slices.Equal(got, seqRange(first, first+1)) || !p.More {
		t.Fatalf("got sync from the cursor %v more %t, want %d, %d and more",
			got, p.More, first, first+1)
	}
	if p.FirstSeq != first {
		t.Fatalf("got first seq %d, want %d", p.FirstSeq, first)
	}
}

// TestNode_Dissolve_HistoryGoesInBatches dissolves a group with a long
// history through the client: it is gone at once for members and
// applicants, online and offline, and its records go afterwards in
// several bounded trims until nothing of it is left.
func TestNode_Dissolve_HistoryGoesInBatches(t *testing.T) {
	const messages, batch = 1500, 100
	cfg := testConfig(t)
	cfg.Retention.Batch = batch
	cfg.Retention.Interval = time.Hour // the dissolve nudges the trim loop
	n := startNode(t, cfg)
	ctx := ctxT(t)
	alice, al := user(t, n.ClientAddr(), false, "alice")
	carol, _ := user(t, n.ClientAddr(), false, "carol")
	dave, _ := user(t, n.ClientAddr(), false, "dave")
	gid := must(alice.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "big"}))(t).GroupId
	must(carol.ApplyGroup(ctx, gid, "", "me?"))(t)
	must(dave.ApplyGroup(ctx, gid, "", "and me?"))(t)
	// The history is written while alice is away: she would not read the
	// events of so many messages.
	for _, c := range []*transport.Client{alice, dave} {
		if err := c.Logout(ctx); err != nil {
			t.Fatal(err)
		}
	}
	shard := n.shardOf(gid)
	var sends []*proposal
	for i := range messages {
		sends = append(sends, n.submit(shard, &pb.Command{Op: &pb.Command_Send{Send: &pb.SendCmd{
			GroupId: gid, SenderId: al.User.UserId, Text: "x", ClientMsgId: fmt.Sprint(i)}}}))
	}
	for _, pr := range sends {
		must(n.finish(ctx, nil, shard, pr))(t)
	}
	if got := groupRecords(t, n, gid); got < 2*messages {
		t.Fatalf("got %d records of the group before the dissolve, want its history", got)
	}

	must(alice.Login(ctx, "alice", "pw-alice"))(t)
	if err := alice.Dissolve(ctx, gid); err != nil {
		t.Fatal(err)
	}
	at := n.shards[shard].fsm.AppliedIndex()

	// An online applicant learns at once, an offline one at login.
	ev := waitEvent(t, carol, "refusal", func(e *pb.Event) bool { return e.GetDecided() != nil })
	wantDissolvedRefusal(t, ev, gid)
	dl := must(dave.Login(ctx, "dave", "pw-dave"))(t)
	if len(dl.Notices) != 1 {
		t.Fatalf("got dave's notices %v, want the refusal", dl.Notices)
	}
	wantDissolvedRefusal(t, dl.Notices[0].Event, gid)
	_, err := alice.History(ctx, gid, 0, 10)
	wantCode(t, err, pb.Code_NOT_MEMBER)

	waitUntil(t, "the group's records removed", func() bool {
		return groupRecords(t, n, gid) == 0
	})
	if trims := n.shards[shard].fsm.AppliedIndex() - at; trims < 2*messages/batch {
		t.Fatalf("got the records removed in %d entries, want at least %d bounded trims",
			trims, 2*messages/batch)
	}
	prefix := fmt.Sprintf(" %016x", gid)
	for _, l := range strings.Split(stateDump(t, n, int(shard)), "\n") {
		if strings.Contains(l, prefix) {
			t.Fatalf("got %q left of the group, want nothing", l)
		}
	}
}

func wantDissolvedRefusal(t testing.TB, ev *pb.Event, gid uint64) {
	t.Helper()
	d := ev.GetDecided()
	if d.GetGroupId() != gid || d.Approved || d.Reason != pb.ApplicationDecided_DISSOLVED ||
		ev.NoticeId == 0 {
		t.Fatalf("got %v, want a refusal of group %d as dissolved, with a notice", ev, gid)
	}
}

// groupRecords counts the records of a group shard whose keys begin with
// gid, and its purge mark.
func groupRecords(t testing.TB, n *Node, gid uint64) int {
	t.Helper()
	c := 0
	err := n.shards[n.shardOf(gid)].fsm.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{storage.Groups, storage.Members, storage.Apps,
			storage.Messages, storage.Dedup, storage.Purge, storage.Files, storage.Uploads} {
			cur := tx.Bucket(b).Cursor()
			p := storage.U64(gid)
			for k, _ := cur.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = cur.Next() {
				c++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func msgSeqs(p *pb.MessagePage) []uint64 {
	var out []uint64
	for _, m := range p.Messages {
		out = append(out, m.Seq)
	}
	return out
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}
