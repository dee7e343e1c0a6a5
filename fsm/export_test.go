package fsm

import (
	"testing"

	bolt "go.etcd.io/bbolt"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/storage"
)

// TestFSM_MarkRestored: on a group shard a restore records each group's
// last seq, which the groups' summaries report and later sends leave as
// it was; dissolving a group drops its record. On the meta shard each
// restore's incarnation becomes the next one's previous. Neither moves
// the applied index.
func TestFSM_MarkRestored(t *testing.T) {
	h := newWorld(t)
	h.say(t, g1, alice, "a")
	h.say(t, g1, bob, "b")
	g1Seq, g2Seq := h.group(t, g1).LastSeq, h.group(t, g2).LastSeq
	applied := h.f.AppliedIndex()
	if err := h.f.MarkRestored(77); err != nil {
		t.Fatal(err)
	}
	h.say(t, g1, alice, "after the restore")
	h.view(t, func(tx *bolt.Tx) error {
		gs, err := GroupsOfUser(tx, alice)
		if err != nil {
			return err
		}
		if len(gs) != 2 || gs[0].RestoredSeq != g1Seq || gs[1].RestoredSeq != g2Seq ||
			gs[0].LastSeq != g1Seq+1 {
			t.Fatalf("got summaries %v, want restored seqs %d and %d", gs, g1Seq, g2Seq)
		}
		return nil
	})
	if got := h.f.AppliedIndex(); got != applied+1 {
		t.Fatalf("applied index %d, want %d: only the send moves it", got, applied+1)
	}
	h.must(t, cmd(&pb.DissolveCmd{GroupId: g1, ActorId: alice}))
	h.view(t, func(tx *bolt.Tx) error {
		if got := storage.RestoredSeq(tx, g1); got != 0 {
			t.Fatalf("dissolved group's restored seq %d, want none", got)
		}
		return nil
	})

	meta := newFSM(t, KindMeta)
	for _, inc := range []uint64{5, 9} {
		if err := meta.f.MarkRestored(inc); err != nil {
			t.Fatal(err)
		}
	}
	meta.view(t, func(tx *bolt.Tx) error {
		if cur, prev := Incarnation(tx), PreviousIncarnation(tx); cur != 9 || prev != 5 {
			t.Fatalf("incarnation %d after %d, want 9 after 5", cur, prev)
		}
		return nil
	})
}
