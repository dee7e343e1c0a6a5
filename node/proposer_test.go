package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protowire"
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

// Commands that other nodes forward to the leader join its queue and share
// entries with its own commands; the origin gets each one's result and an
// index that covers them all.
func TestProposer_ForwardedCommandsShareEntries(t *testing.T) {
	f := &gatedFSM{gate: make(chan struct{})}
	r := startGatedRaft(t, f)
	p := newProposer(r, nil, 10*time.Second)
	t.Cleanup(p.close)
	cmd := &pb.Command{Op: &pb.Command_Send{Send: &pb.SendCmd{GroupId: 1, Text: "x"}}}
	data, err := proto.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}

	var local []*proposal
	for want := range uint64(2) { // entries 1 and 2: the first holds the state machine
		local = append(local, p.submit(cmd))
		waitUntil(t, "the entry to be formed", func() bool { return p.entries.Load() == want+1 })
	}
	local = append(local, p.submit(cmd))
	waitUntil(t, "the third command to be taken", func() bool { return len(p.queue) == 0 })
	// Two other nodes forward a batch of three and a single command.
	three := encodeBatch([]*proposal{{data: data}, {data: data}, {data: data}})
	results := make(chan *pb.ForwardResponse, 2)
	for _, entry := range [][]byte{three, data} {
		cmds, batch, err := splitEntry(entry)
		if err != nil {
			t.Fatal(err)
		}
		prs := make([]*proposal, len(cmds))
		for i, c := range cmds {
			prs[i] = p.submitForwarded(c)
		}
		go func() {
			resp, err := forwardResults(prs, batch)
			if err != nil {
				t.Error(err)
			}
			results <- resp
		}()
	}
	waitUntil(t, "the forwarded commands to queue", func() bool { return len(p.queue) == 4 })
	close(f.gate)
	var last uint64
	for i, pr := range local {
		o := <-pr.out
		if o.err != nil {
			t.Fatalf("command %d: %v", i, o.err)
		}
		last = o.index
	}
	for range 2 {
		resp := <-results
		if resp == nil || resp.Index != last || len(resp.Results) == 0 {
			t.Fatalf("forward answered %v, want results at index %d", resp, last)
		}
		for _, res := range resp.Results {
			if res.Code != pb.Code_OK {
				t.Fatalf("forwarded command got %v", res.Code)
			}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if want := []int{1, 1, 5}; !slices.Equal(f.entries, want) {
		t.Fatalf("entries held %v commands, want %v", f.entries, want)
	}
}

// A node that does not lead the shard refuses forwarded commands as never
// appended, rather than passing them on, and forwards only its own.
func TestProposer_ForwardedRefusedOffLeader(t *testing.T) {
	store := raft.NewInmemStore()
	snaps := raft.NewInmemSnapshotStore()
	_, trans := raft.NewInmemTransport("")
	rc := RaftConfig("p1", testConfig(t).Raft, newHCLog(testConfig(t).Logger, "raft"))
	// A peer that never answers: this node can never be elected alone.
	two := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: trans.LocalAddr()},
		{ID: "p2", Address: "nowhere"}}}
	if err := raft.BootstrapCluster(rc, store, store, snaps, trans, two); err != nil {
		t.Fatal(err)
	}
	r, err := raft.NewRaft(rc, &gatedFSM{gate: make(chan struct{})}, store, store, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Shutdown().Error() })
	sent := make(chan int, 4)
	forward := func(entry []byte) (*pb.ForwardResponse, error) {
		cmds, _, err := splitEntry(entry)
		if err != nil {
			return nil, err
		}
		sent <- len(cmds)
		out := &pb.ForwardResponse{Index: 7}
		for range cmds {
			out.Results = append(out.Results, &pb.ApplyResult{})
		}
		return out, nil
	}
	p := newProposer(r, forward, 10*time.Second)
	t.Cleanup(p.close)
	data, err := proto.Marshal(&pb.Command{Op: &pb.Command_Send{Send: &pb.SendCmd{GroupId: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	fwd := []*proposal{p.submitForwarded(data), p.submitForwarded(data)}
	if _, err := forwardResults(fwd, true); !errors.Is(err, errNotLeader) {
		t.Fatalf("forwarded commands off the leader: got %v, want errNotLeader", err)
	}
	own := p.submit(&pb.Command{Op: &pb.Command_Send{Send: &pb.SendCmd{GroupId: 1}}})
	if o := <-own.out; o.err != nil || o.index != 7 {
		t.Fatalf("own command: got index %d, error %v; want it forwarded", o.index, o.err)
	}
	if n := <-sent; n != 1 {
		t.Fatalf("forwarded an entry of %d commands, want only this node's one", n)
	}
}

// splitEntry takes apart exactly what encodeBatch forms and refuses
// anything else that claims to be a batch.
func TestSplitEntry(t *testing.T) {
	one, err := proto.Marshal(&pb.Command{Op: &pb.Command_Send{Send: &pb.SendCmd{GroupId: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	two := []byte("second command")
	for _, tc := range []struct {
		batch []*proposal
		want  [][]byte
	}{
		{[]*proposal{{data: one}}, [][]byte{one}},
		{[]*proposal{{data: one}, {data: two}}, [][]byte{one, two}},
	} {
		got, batch, err := splitEntry(encodeBatch(tc.batch))
		same := slices.EqualFunc(got, tc.want, bytes.Equal)
		if err != nil || batch != (len(tc.want) > 1) || !same {
			t.Fatalf("split %d commands: got %q, %v, %v", len(tc.want), got, batch, err)
		}
	}
	good := encodeBatch([]*proposal{{data: one}, {data: two}})
	tooMany := make([]*proposal, batchMaxCommands+1)
	for i := range tooMany {
		tooMany[i] = &proposal{data: one}
	}
	for name, entry := range map[string][]byte{
		"truncated":      good[:len(good)-1],
		"trailing bytes": append(bytes.Clone(good), 0),
		"empty batch":    batchOf(nil),
		"over the bound": encodeBatch(tooMany),
		"wrong inner tag": batchOf(protowire.AppendVarint(
			protowire.AppendTag(nil, 1, protowire.VarintType), 5)),
	} {
		if _, _, err := splitEntry(entry); !errors.Is(err, errBadEntry) {
			t.Errorf("%s: got %v, want errBadEntry", name, err)
		}
	}
}

// batchOf is an entry whose batch field holds inner.
func batchOf(inner []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, batchField, protowire.BytesType), inner)
}

// A write that may have been appended is answered TIMEOUT (outcome
// unknown), never UNAVAILABLE (not done), whichever error ends its wait:
// an entry in flight when raft shuts down may still be committed by the
// next leader, and so may one whose request context ends first.
func TestCodeOf_UnknownOutcomeIsNeverUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want pb.Code
	}{
		{"raft shut down with the entry in flight", raftError(raft.ErrRaftShutdown),
			pb.Code_TIMEOUT},
		{"leadership lost", raftError(raft.ErrLeadershipLost), pb.Code_TIMEOUT},
		{"request context cancelled while waiting",
			fmt.Errorf("%w: %w", errUnknownOutcome, context.Canceled), pb.Code_TIMEOUT},
		{"never appended: not the leader", raftError(raft.ErrNotLeader), pb.Code_UNAVAILABLE},
		{"never appended: proposer stopped", errClosed, pb.Code_UNAVAILABLE},
	} {
		if got := codeOf(tc.err); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
