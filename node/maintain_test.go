package node

import (
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/schat/schat/fsm"
)

// TestNode_PruneSessions_OnlyWhenExpired shows that the hourly prune
// leaves an idle meta shard's applied index alone, and drops a session
// once it has expired.
func TestNode_PruneSessions_OnlyWhenExpired(t *testing.T) {
	n := startNode(t, testConfig(t))
	meta := n.shards[metaShard].fsm
	_, l := user(t, n.ClientAddr(), false, "ivan")
	hash := tokenHash(l.Token)
	session := func() bool {
		var found bool
		err := meta.View(func(tx *bolt.Tx) error {
			s, err := fsm.GetSession(tx, hash)
			found = s != nil
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return found
	}

	before := meta.AppliedIndex()
	n.pruneSessions(time.Now())
	if got := meta.AppliedIndex(); got != before {
		t.Fatalf("prune with nothing expired moved the applied index from %d to %d", before, got)
	}
	if !session() {
		t.Fatalf("got the live session pruned, want it kept")
	}

	n.pruneSessions(time.UnixMilli(l.TokenExpiresMs))
	if got := meta.AppliedIndex(); got <= before {
		t.Fatalf("prune with an expired session left the applied index at %d", got)
	}
	if session() {
		t.Fatalf("got the expired session kept, want it pruned")
	}
}
