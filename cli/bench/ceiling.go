package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/schat/schat/fsm"
	"github.com/schat/schat/node"
	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/storage"
)

// runCeiling measures the machine's raw limits, in this process, against
// which the other figures are read.
//
// Both apply figures come from a one-node raft with a node's raft
// configuration, its log opened as a node opens it (node.OpenRaftLog) and
// its state file as a node opens one (storage.OpenState). Its state
// machine stores each command of an entry under its own key, all of a
// raft batch in one bbolt transaction with the applied index, and does
// nothing else: no decoding, no chat rules, keys in ascending order (the
// fewest pages a transaction can touch). Each command is the size of a
// text message's command.
//
//   - The ceiling proper (OpsPerSec, the yardstick of every ratio): raft
//     and bbolt applying entries the size of a chat message, one command
//     each, from RawWriters goroutines that each keep one entry
//     outstanding: raft's own group commit and one bbolt transaction per
//     raft batch, and no batching of schat's.
//   - batched_ops_per_sec: the same, fed by a node's own proposer
//     (node.Proposer), which gathers the commands queued while raft is
//     busy into one entry as a shard does, with Writers commands
//     outstanding (by default as many as send keeps in flight): the most
//     raft and bbolt sustain for the work a send does at least, an upper
//     bound of send.
//
// The disk: how many 4 KiB write + fsync cycles per second the disk under
// TempDir takes.
func (r *runner) runCeiling(ctx context.Context, p *progress, m *meter) (Result, error) {
	cfg := r.cfg
	cmd := ceilingCommand(cfg.MessageSize)
	res := Result{Params: map[string]any{"raw_writers": cfg.RawWriters,
		"writers":       cfg.writers(),
		"command_bytes": proto.Size(cmd), "duration_sec": cfg.Duration.Seconds(),
		"dir": cfg.TempDir}}
	dir, err := os.MkdirTemp(cfg.TempDir, "schat-ceiling-")
	if err != nil {
		return res, fmt.Errorf("bench: ceiling directory: %w", err)
	}
	defer os.RemoveAll(dir)

	p.setPhase("fsync")
	fsyncFor := min(cfg.Duration, 2*time.Second)
	if res.FsyncsPerSec, err = fsyncRate(filepath.Join(dir, "fsync"), fsyncFor); err != nil {
		return res, err
	}

	p.setPhase("starting raft")
	c, err := startCeiling(ctx, dir)
	if err != nil {
		return res, err
	}
	defer c.stop()

	p.setPhase("applying entries")
	if err := c.raw(ctx, cfg, cmd, &res); err != nil {
		return res, err
	}
	p.setPhase("applying batched entries")
	lat := newLatencies()
	// A command is waited for even past the end: raft must have answered
	// every entry before it shuts down. Only those done in time count.
	var batched meter
	elapsed := closedLoop(ctx, cfg.Duration, 1, cfg.writers(),
		func(ctx context.Context, _, j int) error {
			t := time.Now()
			if _, err := c.prop.Propose(context.WithoutCancel(ctx), cmd); err != nil {
				return err
			}
			if ctx.Err() == nil {
				lat.record(j, time.Since(t))
				batched.ops.Add(1)
			}
			return nil
		}, m)
	res.Params["batched_ops_per_sec"] = math.Round(float64(batched.ops.Load()) /
		elapsed.Seconds())
	res.Params["batched_p99_ms"] = round1(float64(lat.merged().ValueAtQuantile(99)) / 1000)
	if cmds, entries, commits := c.state.counts(); entries > 0 {
		res.Params["commands_per_entry"] = round1(float64(cmds) / float64(entries))
		res.Params["commands_per_commit"] = round1(float64(cmds) / float64(commits))
	}
	r.ceiling = res.OpsPerSec
	return res, nil
}

// raw measures raft and bbolt applying one command per entry, from
// cfg.RawWriters goroutines each with one entry outstanding, into res:
// its rate, latency and errors are the ceiling's own.
func (c *ceiling) raw(ctx context.Context, cfg Config, cmd *pb.Command, res *Result) error {
	entry, err := proto.Marshal(cmd)
	if err != nil {
		return err
	}
	var m meter
	lat := newLatencies()
	elapsed := closedLoop(ctx, cfg.Duration, 1, cfg.RawWriters,
		func(ctx context.Context, _, j int) error {
			t := time.Now()
			if err := c.raft.Apply(entry, 10*time.Second).Error(); err != nil {
				return err
			}
			if ctx.Err() == nil {
				lat.record(j, time.Since(t))
				m.ops.Add(1)
			}
			return nil
		}, &m)
	res.setRate(&m, elapsed)
	res.setLatency(lat.merged())
	c.state.reset()
	return ctx.Err()
}

// ceilingCommand is a text message's command with a text of size bytes.
func ceilingCommand(size int) *pb.Command {
	return &pb.Command{TimeMs: time.Now().UnixMilli(), Op: &pb.Command_Send{
		Send: &pb.SendCmd{GroupId: 1001, SenderId: 10001, SenderName: "bench user",
			Type: pb.MessageType_MESSAGE_TYPE_TEXT, Text: strings.Repeat("x", size)}}}
}

// fsyncRate writes a 4 KiB block to path and fsyncs it, over and over for
// d, and returns the fsyncs per second.
func fsyncRate(path string, d time.Duration) (float64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, fmt.Errorf("bench: fsync file: %w", err)
	}
	defer f.Close()
	block := make([]byte, 4096)
	start := time.Now()
	n := 0
	for time.Since(start) < d {
		if _, err := f.WriteAt(block, 0); err != nil {
			return 0, fmt.Errorf("bench: fsync file: %w", err)
		}
		if err := f.Sync(); err != nil {
			return 0, fmt.Errorf("bench: fsync: %w", err)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// ceiling is the raft, state file and proposer of the ceiling.
type ceiling struct {
	raft  *raft.Raft
	state *ceilingFSM
	prop  *node.Proposer
	stop  func()
}

// startCeiling starts a one-node raft in dir, set up as a node's shard,
// and waits until it leads.
func startCeiling(ctx context.Context, dir string) (*ceiling, error) {
	logs, err := node.OpenRaftLog(filepath.Join(dir, "raft.db"))
	if err != nil {
		return nil, fmt.Errorf("bench: raft log: %w", err)
	}
	db, err := storage.OpenState(filepath.Join(dir, "state.db"))
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("bench: state file: %w", err)
	}
	c := &ceiling{state: &ceilingFSM{db: db}}
	c.stop = func() { logs.Close(); db.Close() }
	cached, err := raft.NewLogCache(512, logs)
	if err != nil {
		c.stop()
		return nil, err
	}
	snaps := raft.NewInmemSnapshotStore()
	_, trans := raft.NewInmemTransport("")
	quiet := hclog.New(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Off})
	rc := node.RaftConfig("ceiling", node.DefaultConfig().Raft, quiet)
	self := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID,
		Address: trans.LocalAddr()}}}
	if err := raft.BootstrapCluster(rc, cached, logs, snaps, trans, self); err != nil {
		c.stop()
		return nil, fmt.Errorf("bench: bootstrap raft: %w", err)
	}
	if c.raft, err = raft.NewRaft(rc, c.state, cached, logs, snaps, trans); err != nil {
		c.stop()
		return nil, fmt.Errorf("bench: start raft: %w", err)
	}
	c.prop = node.NewProposer(c.raft, 10*time.Second)
	c.stop = func() {
		c.prop.Close()
		c.raft.Shutdown().Error()
		logs.Close()
		db.Close()
	}
	if err := waitLeader(ctx, c.raft); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// waitLeader waits until r leads.
func waitLeader(ctx context.Context, r *raft.Raft) error {
	for r.State() != raft.Leader {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.LeaderCh():
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// ceilingFSM stores every command of a batch of entries under its own key
// in one bbolt transaction, with the applied index: the least a state
// machine on bbolt does for schat's entries.
type ceilingFSM struct {
	db *bolt.DB
	// commands, entries and commits count what was stored: commands, the
	// raft entries holding them and the transactions.
	commands, entries, commits atomic.Int64
}

func (f *ceilingFSM) counts() (commands, entries, commits int64) {
	return f.commands.Load(), f.entries.Load(), f.commits.Load()
}

// reset zeroes the counts between the two measurements.
func (f *ceilingFSM) reset() {
	f.commands.Store(0)
	f.entries.Store(0)
	f.commits.Store(0)
}

// ApplyBatch implements raft.BatchingFSM.
func (f *ceilingFSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	err := f.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(storage.Messages)
		for i, l := range logs {
			if l.Type != raft.LogCommand {
				continue
			}
			res, n, err := storeCommands(b, l)
			if err != nil {
				return err
			}
			out[i] = res
			f.entries.Add(1)
			f.commands.Add(int64(n))
		}
		last := logs[len(logs)-1]
		return storage.SetApplied(tx, last.Index, last.Term)
	})
	if err != nil {
		panic(fmt.Sprintf("bench: ceiling commit: %v", err))
	}
	f.commits.Add(1)
	return out
}

// storeCommands puts each command of entry l under (index, position) and
// returns the results a node's proposer expects (a []*fsm.Result for an
// entry holding a CommandBatch, a *fsm.Result for a single command) and
// how many commands it stored.
func storeCommands(b *bolt.Bucket, l *raft.Log) (any, int, error) {
	cmds, batch := splitBatch(l.Data)
	for i, c := range cmds {
		if err := b.Put(storage.U64s(l.Index, uint64(i)), c); err != nil {
			return nil, 0, err
		}
	}
	if !batch {
		return &fsm.Result{}, len(cmds), nil
	}
	res := make([]*fsm.Result, len(cmds))
	for i := range res {
		res[i] = &fsm.Result{}
	}
	return res, len(cmds), nil
}

// batchField is the field number of Command.batch.
var batchField = (&pb.Command{}).ProtoReflect().Descriptor().Fields().ByName("batch").Number()

// splitBatch returns the encoded commands of an entry without decoding
// them: those of its CommandBatch, or the entry itself when it is one
// command.
func splitBatch(entry []byte) (cmds [][]byte, batch bool) {
	num, typ, n := protowire.ConsumeTag(entry)
	if n < 0 || num != batchField || typ != protowire.BytesType {
		return [][]byte{entry}, false
	}
	inner, m := protowire.ConsumeBytes(entry[n:])
	if m < 0 || n+m != len(entry) {
		return [][]byte{entry}, false
	}
	for len(inner) > 0 {
		_, _, tn := protowire.ConsumeTag(inner)
		if tn < 0 {
			break
		}
		c, cn := protowire.ConsumeBytes(inner[tn:])
		if cn < 0 {
			break
		}
		cmds = append(cmds, c)
		inner = inner[tn+cn:]
	}
	return cmds, true
}

// Apply implements raft.FSM.
func (f *ceilingFSM) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// Snapshot implements raft.FSM with an empty snapshot: the ceiling never
// restores.
func (f *ceilingFSM) Snapshot() (raft.FSMSnapshot, error) { return emptySnapshot{}, nil }

// Restore implements raft.FSM.
func (f *ceilingFSM) Restore(rc io.ReadCloser) error { return rc.Close() }

type emptySnapshot struct{}

func (emptySnapshot) Persist(s raft.SnapshotSink) error { return s.Close() }
func (emptySnapshot) Release()                          {}
