package fsm

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
)

// memSink is a raft.SnapshotSink that keeps the snapshot in memory.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

// snapshot persists a snapshot of h's current state.
func (h *harness) snapshot(t testing.TB) []byte {
	t.Helper()
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	defer snap.Release()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatalf("persist: %v", err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("got sink closed %t cancelled %t, want closed", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

func (h *harness) restore(t testing.TB, snap []byte) {
	t.Helper()
	if err := h.f.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatalf("restore: %v", err)
	}
}

// worldLogs returns the logs of a short history on a group shard.
func worldLogs(t testing.TB, h *harness) []*raft.Log {
	cmds := []*pb.Command{
		cmd(&pb.CreateGroupCmd{GroupId: g1, OwnerId: alice, Name: "one", Public: true}),
		cmd(&pb.ApplyCmd{GroupId: g1, UserId: bob}),
		cmd(&pb.DecideCmd{GroupId: g1, OwnerId: alice, UserId: bob, Approve: true}),
		cmd(&pb.SendCmd{GroupId: g1, SenderId: bob, Text: "hi", ClientMsgId: "c1"}),
		cmd(&pb.SendCmd{GroupId: g1, SenderId: carol, Text: "refused"}),
		cmd(&pb.LeaveCmd{GroupId: g1, ActorId: alice, UserId: bob}),
	}
	var logs []*raft.Log
	for _, c := range cmds {
		logs = append(logs, h.log(t, c))
	}
	return logs
}

func TestFSM_ApplyBatch_SkipsApplied(t *testing.T) {
	h := newFSM(t, KindGroup)
	logs := worldLogs(t, h)
	h.f.ApplyBatch(logs[:3])
	h.f.ApplyBatch(logs[3:])
	h.take()
	want := h.dump(t, true)

	tests := []struct {
		name    string
		restart bool
		logs    []*raft.Log
	}{
		{"same process, whole batch", false, logs},
		{"after restart, whole batch", true, logs},
		{"after restart, one by one", true, nil},
		{"at the applied index only", false, logs[len(logs)-1:]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.restart {
				h.reopen(t)
			}
			if got := h.f.AppliedIndex(); got != uint64(len(logs)) {
				t.Fatalf("got applied index %d, want %d", got, len(logs))
			}
			var out []interface{}
			if tc.logs != nil {
				out = h.f.ApplyBatch(tc.logs)
			} else {
				for _, l := range logs {
					out = append(out, h.f.Apply(l))
				}
			}
			for i, r := range out {
				if r != nil {
					t.Fatalf("entry %d: got result %v, want none", i, r)
				}
			}
			wantEvents(t, h.take())
			sameState(t, h.dump(t, true), want)
		})
	}
}

func TestFSM_ApplyBatch_OneTransaction(t *testing.T) {
	h := newFSM(t, KindGroup)
	txid := func() int {
		var id int
		h.view(t, func(tx *bolt.Tx) error { id = tx.ID(); return nil })
		return id
	}
	logs := worldLogs(t, h)
	noop := &raft.Log{Index: h.index + 1, Term: 1, Type: raft.LogNoop}
	logs = append(logs, noop)
	h.index++
	before := txid()

	out := h.f.ApplyBatch(logs)

	if got := txid(); got != before+1 {
		t.Fatalf("got transaction id %d after the batch, want %d", got, before+1)
	}
	if got := h.f.AppliedIndex(); got != noop.Index {
		t.Fatalf("got applied index %d, want %d", got, noop.Index)
	}
	codes := make([]string, len(out))
	for i, r := range out {
		if res, ok := r.(*Result); ok && res != nil {
			codes[i] = res.Code.String()
		}
	}
	want := []string{"OK", "OK", "OK", "OK", "NOT_MEMBER", "OK", ""}
	if strings.Join(codes, ",") != strings.Join(want, ",") {
		t.Fatalf("got codes %v, want %v", codes, want)
	}
	// One publish carries the batch's events in log order; the refused
	// send adds none.
	wantEvents(t, h.take(),
		"g1001 u[10001] member:JOINED", "g1001 u[] note:CREATED", "g0 u[10001] application",
		"g1001 u[10002] member:JOINED", "g1001 u[] note:JOINED", "g0 u[10002] decided:true notice",
		"g1001 u[] message",
		"g1001 u[] note:KICKED", "g1001 u[] member:KICKED", "g0 u[10002] member:KICKED notice")
}

func TestFSM_Restore_Snapshot(t *testing.T) {
	h := newWorld(t)
	h.say(t, g1, bob, "before")
	want := h.dump(t, true)
	index := h.f.AppliedIndex()
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	// Applying goes on while the snapshot waits to be persisted.
	h.say(t, g1, bob, "after")
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatalf("persist: %v", err)
	}
	snap.Release()

	fresh := newFSM(t, KindGroup)
	fresh.restore(t, sink.Bytes())

	sameState(t, fresh.dump(t, true), want)
	if got := fresh.f.AppliedIndex(); got != index {
		t.Fatalf("got applied index %d, want %d", got, index)
	}
	// The restored state takes the log from where the snapshot ends.
	fresh.index = index
	if seq := fresh.say(t, g1, alice, "next"); seq != h.group(t, g1).LastSeq {
		t.Fatalf("got seq %d, want %d", seq, h.group(t, g1).LastSeq)
	}
	if got := fresh.f.AppliedIndex(); got != index+1 {
		t.Fatalf("got applied index %d, want %d", got, index+1)
	}
}

func TestFSM_Restore_SkipsOlder(t *testing.T) {
	h := newWorld(t)
	old := h.snapshot(t)
	h.say(t, g1, bob, "newer")
	want := h.dump(t, true)
	index := h.f.AppliedIndex()

	h.restore(t, old)

	sameState(t, h.dump(t, true), want)
	if got := h.f.AppliedIndex(); got != index {
		t.Fatalf("got applied index %d, want %d", got, index)
	}
	// The same snapshot again is skipped too.
	h.restore(t, h.snapshot(t))
	sameState(t, h.dump(t, true), want)
}

func TestFSM_Restore_Garbage(t *testing.T) {
	h := newWorld(t)
	want := h.dump(t, true)
	err := h.f.Restore(io.NopCloser(strings.NewReader("not a snapshot at all, no")))
	if err == nil {
		t.Fatalf("got no error restoring garbage, want one")
	}
	sameState(t, h.dump(t, true), want)
}

func TestFSM_WaitApplied(t *testing.T) {
	h := newWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// An index already applied returns at once.
	if err := h.f.WaitApplied(ctx, h.f.AppliedIndex()); err != nil {
		t.Fatalf("got %v for an applied index, want nil", err)
	}

	target := h.f.AppliedIndex() + 2
	done := make(chan error, 1)
	go func() { done <- h.f.WaitApplied(ctx, target) }()
	h.say(t, g1, bob, "one")
	select {
	case err := <-done:
		t.Fatalf("got %v before index %d was applied, want to wait", err, target)
	default:
	}
	h.say(t, g1, bob, "two")
	if err := <-done; err != nil {
		t.Fatalf("got %v, want nil once index %d is applied", err, target)
	}

	// An index never reached gives up with the context.
	short, stop := context.WithCancel(context.Background())
	go stop()
	if err := h.f.WaitApplied(short, target+100); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want %v", err, context.Canceled)
	}
}

// BenchmarkFSM_ApplyBatch measures applying batches of 64 sends of 200
// bytes of text into one group, each batch committed (and synced) in one
// transaction.
func BenchmarkFSM_ApplyBatch(b *testing.B) {
	const batch = 64
	h := newFSM(b, KindGroup)
	h.must(b, cmd(&pb.CreateGroupCmd{GroupId: g1, OwnerId: alice, Name: "bench"}))
	data, err := proto.Marshal(&pb.Command{TimeMs: startMs, Op: &pb.Command_Send{
		Send: &pb.SendCmd{GroupId: g1, SenderId: alice, SenderName: "Alice",
			Text: strings.Repeat("x", 200)}}})
	if err != nil {
		b.Fatal(err)
	}
	logs := make([]*raft.Log, batch)
	b.SetBytes(int64(batch * len(data)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		for i := range logs {
			h.index++
			logs[i] = &raft.Log{Index: h.index, Term: 1, Type: raft.LogCommand, Data: data}
		}
		h.f.ApplyBatch(logs)
		h.take()
		n++
	}
	b.ReportMetric(float64(n*batch)/b.Elapsed().Seconds(), "msgs/s")
}

// TestFSM_ApplyBatch_CommandBatch applies a batch entry: each command gets
// its own result, a refused one changes nothing and emits nothing, and the
// others land in order.
func TestFSM_ApplyBatch_CommandBatch(t *testing.T) {
	h := newWorld(t)
	last := h.group(t, g1).LastSeq
	batch := &pb.Command{Op: &pb.Command_Batch{Batch: &pb.CommandBatch{Commands: []*pb.Command{
		cmd(&pb.SendCmd{GroupId: g1, SenderId: bob, Text: "one"}),
		cmd(&pb.SendCmd{GroupId: g1, SenderId: carol, Text: "not a member"}),
		cmd(&pb.SendCmd{GroupId: g1, SenderId: alice, Text: "two"}),
		{Op: &pb.Command_Batch{Batch: &pb.CommandBatch{}}},
	}}}}
	for _, c := range batch.GetBatch().Commands {
		c.TimeMs = h.now
	}
	out := h.f.ApplyBatch([]*raft.Log{h.log(t, batch)})
	res, ok := out[0].([]*Result)
	if !ok || len(res) != 4 {
		t.Fatalf("got result %#v, want 4 results", out[0])
	}
	wantCodes := []pb.Code{pb.Code_OK, pb.Code_NOT_MEMBER, pb.Code_OK, pb.Code_INTERNAL}
	for i, want := range wantCodes {
		if res[i].Code != want {
			t.Errorf("result %d: got %v, want %v", i, res[i].Code, want)
		}
	}
	if res[0].Message.Seq != last+1 || res[2].Message.Seq != last+2 {
		t.Fatalf("got seqs %d, %d; want %d, %d", res[0].Message.Seq, res[2].Message.Seq,
			last+1, last+2)
	}
	wantEvents(t, h.take(), "g1001 u[] message", "g1001 u[] message")
}
