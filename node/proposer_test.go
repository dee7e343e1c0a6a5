package node

import (
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/schat/schat/fsm"
	pb "github.com/schat/schat/proto"
)

// gatedFSM records how many commands each entry it applies holds, and
// holds its first batch until gate is closed.
type gatedFSM struct {
	gate    chan struct{}
	once    sync.Once
	mu      sync.Mutex
	entries []int
}

func (f *gatedFSM) ApplyBatch(logs []*raft.Log) []any {
	f.once.Do(func() { <-f.gate })
	out := make([]any, len(logs))
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		var cmd pb.Command
		if err := proto.Unmarshal(l.Data, &cmd); err != nil {
			panic(err)
		}
		n := 1
		out[i] = &fsm.Result{}
		if b := cmd.GetBatch(); b != nil {
			n = len(b.Commands)
			rs := make([]*fsm.Result, n)
			for j := range rs {
				rs[j] = &fsm.Result{}
			}
			out[i] = rs
		}
		f.mu.Lock()
		f.entries = append(f.entries, n)
		f.mu.Unlock()
	}
	return out
}

func (f *gatedFSM) Apply(l *raft.Log) any               { return f.ApplyBatch([]*raft.Log{l})[0] }
func (f *gatedFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, raft.ErrNothingNewToSnapshot }
func (f *gatedFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

// startGatedRaft starts a one-node in-memory raft over f that leads.
func startGatedRaft(t *testing.T, f *gatedFSM) *raft.Raft {
	t.Helper()
	store := raft.NewInmemStore()
	snaps := raft.NewInmemSnapshotStore()
	_, trans := raft.NewInmemTransport("")
	rc := RaftConfig("p1", testConfig(t).Raft, newHCLog(testConfig(t).Logger, "raft"))
	self := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID,
		Address: trans.LocalAddr()}}}
	if err := raft.BootstrapCluster(rc, store, store, snaps, trans, self); err != nil {
		t.Fatal(err)
	}
	r, err := raft.NewRaft(rc, f, store, store, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Shutdown().Error() })
	select {
	case <-r.LeaderCh():
	case <-time.After(10 * time.Second):
		t.Fatal("no leader")
	}
	return r
}

// With two entries in flight, the commands submitted meanwhile wait and go
// into one entry once the first is applied.
func TestProposer_TwoEntriesInFlight(t *testing.T) {
	f := &gatedFSM{gate: make(chan struct{})}
	r := startGatedRaft(t, f)
	p := newProposer(r, nil, 10*time.Second)
	t.Cleanup(p.close)
	cmd := &pb.Command{Op: &pb.Command_Send{Send: &pb.SendCmd{GroupId: 1, Text: "x"}}}

	var prs []*proposal
	for want := range uint64(2) { // entries 1 and 2: the first holds the state machine
		prs = append(prs, p.submit(cmd))
		waitUntil(t, "the entry to be formed", func() bool { return p.entries.Load() == want+1 })
	}
	// A third command is taken from the queue but must wait for a slot;
	// the nine after it queue behind it, and all ten make one entry.
	prs = append(prs, p.submit(cmd))
	waitUntil(t, "the third command to be taken", func() bool { return len(p.queue) == 0 })
	for range 9 {
		prs = append(prs, p.submit(cmd))
	}
	close(f.gate)
	for i, pr := range prs {
		if o := <-pr.out; o.err != nil {
			t.Fatalf("command %d: %v", i, o.err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if want := []int{1, 1, 10}; !slices.Equal(f.entries, want) {
		t.Fatalf("entries held %v commands, want %v", f.entries, want)
	}
}

// Shutting a shard's raft down drains the proposer first: an entry that
// raft has committed but not applied when it stops is never answered, so
// every proposal must have its outcome before raft goes.
func TestShutdownRaft_AnswersEntriesInFlight(t *testing.T) {
	f := &gatedFSM{gate: make(chan struct{})}
	r := startGatedRaft(t, f)
	p := newProposer(r, nil, 10*time.Second)
	cmd := &pb.Command{Op: &pb.Command_Send{Send: &pb.SendCmd{GroupId: 1, Text: "x"}}}

	// Entry 1 is held in the state machine; entry 2 is committed behind it.
	prs := []*proposal{p.submit(cmd)}
	waitUntil(t, "the first entry", func() bool { return p.entries.Load() == 1 })
	prs = append(prs, p.submit(cmd))
	waitUntil(t, "the second entry committed", func() bool {
		return p.entries.Load() == 2 && r.CommitIndex() == r.LastIndex()
	})
	done := make(chan error, 1)
	go func() { done <- shutdownRaft(p, r, 10*time.Second, testConfig(t).Logger) }()
	waitUntil(t, "the proposer to stop", func() bool {
		select {
		case <-p.done:
			return true
		default:
			return false
		}
	})
	prs = append(prs, p.submit(cmd)) // after stop: refused at once
	close(f.gate)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("shutdown did not return")
	}
	for i, pr := range prs {
		select {
		case o := <-pr.out:
			if want := i == 2; (o.err != nil) != want {
				t.Fatalf("proposal %d: got error %v, want error %v", i, o.err, want)
			}
		default:
			t.Fatalf("proposal %d has no outcome", i)
		}
	}
}
