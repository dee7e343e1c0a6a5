package fsm

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/raft"

	pb "github.com/schat/schat/proto"
)

// A crash loses the open state transaction and nothing else: the state
// file holds the last commit, and applying the log again from there, as
// raft does on restart, gives the state and the results the node had.
func TestFSM_CrashLosesOnlyTheOpenTransaction(t *testing.T) {
	h := newWorld(t)
	h.f.cfg.CommitDelay = time.Hour // only what this test asks for commits
	var logs []*raft.Log
	var want []uint64
	for i := range 5 {
		l := h.log(t, cmd(&pb.SendCmd{GroupId: g1, SenderId: bob, Text: fmt.Sprint("m", i)}))
		logs = append(logs, l)
		want = append(want, h.f.ApplyBatch([]*raft.Log{l})[0].(*Result).Message.Seq)
		if i == 1 {
			h.f.flush()
		}
	}
	if c := h.f.committed.Load(); c != logs[1].Index {
		t.Fatalf("state file holds entry %d, want %d: later batches commit later", c, logs[1].Index)
	}
	// What kill -9 leaves: the open transaction's pages were only in memory.
	image := filepath.Join(t.TempDir(), "state.db")
	data, err := os.ReadFile(h.path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(image, data, 0o600); err != nil {
		t.Fatal(err)
	}
	crashed := &harness{kind: KindGroup, path: image, now: h.now}
	crashed.open(t)
	defer crashed.f.Close()
	if got := crashed.f.AppliedIndex(); got != logs[1].Index {
		t.Fatalf("restarted at entry %d, want the last commit %d", got, logs[1].Index)
	}
	out := crashed.f.ApplyBatch(logs)
	for i, o := range out {
		if i <= 1 {
			if o != nil {
				t.Errorf("entry %d applied again: %#v", logs[i].Index, o)
			}
			continue
		}
		if got := o.(*Result).Message.Seq; got != want[i] {
			t.Errorf("entry %d replayed as seq %d, want %d", logs[i].Index, got, want[i])
		}
	}
	sameState(t, crashed.dump(t, true), h.dump(t, true))
}

// An open transaction commits once it has waited CommitDelay, with no
// batch or read to prompt it; until then the state file does not hold it,
// and a read sees it all the same.
func TestFSM_OpenTransactionCommitsAfterDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newWorld(t)
		h.f.flush()
		before := h.f.Commits()
		h.say(t, g1, bob, "later")
		time.Sleep(DefaultCommitDelay / 2)
		synctest.Wait()
		if h.f.committed.Load() == h.index {
			t.Fatal("committed before the delay")
		}
		time.Sleep(DefaultCommitDelay)
		synctest.Wait()
		if c := h.f.committed.Load(); c != h.index || h.f.Commits() != before+1 {
			t.Fatalf("after the delay the state file holds entry %d in %d commits, "+
				"want entry %d in one", c, h.f.Commits()-before, h.index)
		}
	})
}

// Batches applied within the delay share one commit; a read commits what
// is applied before it reads.
func TestFSM_BatchesShareACommit(t *testing.T) {
	h := newWorld(t)
	h.f.flush()
	h.f.cfg.CommitDelay = time.Hour
	before := h.f.Commits()
	var seqs []uint64
	for i := range 20 {
		seqs = append(seqs, h.say(t, g1, bob, fmt.Sprint("m", i)))
	}
	if got := h.f.Commits(); got != before {
		t.Fatalf("%d commits for 20 batches before any read, want none", got-before)
	}
	if m := h.message(t, g1, seqs[19]); m.GetText() != "m19" {
		t.Fatalf("read found %v, want the last message", m)
	}
	if got := h.f.Commits(); got != before+1 {
		t.Fatalf("%d commits for 20 batches and a read, want one", got-before)
	}
}
