package fsm

import (
	"testing"

	bolt "go.etcd.io/bbolt"

	pb "github.com/schat/schat/proto"
)

// A batch's events are published before the state file commits the
// batch, and a read started by whoever saw one finds what the event told.
func TestFSM_ApplyBatch_PublishesBeforeCommit(t *testing.T) {
	h := newWorld(t)
	type read struct {
		msg *pb.ChatMessage
		err error
	}
	reads := make(chan read, 1)
	var committedAtPublish uint64
	h.f.cfg.Publish = func(evs []Event) {
		committedAtPublish = h.f.committed.Load()
		seq := evs[0].Event.GetMessage().GetSeq()
		go func() { // a client reading as soon as the event reached it
			var r read
			r.err = h.f.View(func(tx *bolt.Tx) (err error) {
				r.msg, err = getMessage(tx, g1, seq)
				return err
			})
			reads <- r
		}()
	}
	h.must(t, cmd(&pb.SendCmd{GroupId: g1, SenderId: bob, Text: "early"}))
	if committedAtPublish >= h.index {
		t.Fatalf("published with entry %d committed, want before its commit (entry %d)",
			committedAtPublish, h.index)
	}
	r := <-reads
	if r.err != nil || r.msg.GetText() != "early" {
		t.Fatalf("a read after the event found %v (%v), want the message", r.msg, r.err)
	}
}

// A batch that revokes sessions is published only once it has committed:
// a client whose connection it ends cannot come back with the token
// before the state refuses it.
func TestFSM_ApplyBatch_RevocationAfterCommit(t *testing.T) {
	h := newMeta(t)
	var committedAtPublish uint64
	h.f.cfg.Publish = func(evs []Event) {
		committedAtPublish = h.f.committed.Load()
	}
	h.must(t, cmd(&pb.DeleteSessionCmd{TokenHash: []byte("a1")}))
	if committedAtPublish != h.index {
		t.Fatalf("revocation published with entry %d committed, want its own entry %d",
			committedAtPublish, h.index)
	}
}
