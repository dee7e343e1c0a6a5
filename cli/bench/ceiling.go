package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/schat/schat/node"
	pb "github.com/schat/schat/proto"
)

// runCeiling measures the machine's raw limits, in this process, against
// which the other figures are read: how many raft entries the size of a
// chat message's command a single node commits and applies per second, when
// Writers goroutines propose at once and the state machine writes each
// batch in one bbolt transaction (raft, its bbolt log and a bbolt state
// file, the pipeline of a shard without schat's logic); and how many
// fsyncs per second the disk under TempDir takes.
func (r *runner) runCeiling(ctx context.Context, p *progress, m *meter) (Result, error) {
	cfg := r.cfg
	entry := ceilingEntry(cfg.MessageSize)
	res := Result{Params: map[string]any{"writers": cfg.Writers, "entry_bytes": len(entry),
		"duration_sec": cfg.Duration.Seconds(), "dir": cfg.TempDir}}
	dir, err := os.MkdirTemp(cfg.TempDir, "schat-ceiling-")
	if err != nil {
		return res, fmt.Errorf("bench: ceiling directory: %w", err)
	}
	defer os.RemoveAll(dir)

	p.setPhase("fsync")
	if res.FsyncsPerSec, err = fsyncRate(filepath.Join(dir, "fsync"), min(cfg.Duration, 2*time.Second)); err != nil {
		return res, err
	}

	p.setPhase("starting raft")
	rf, stop, err := startCeilingRaft(ctx, dir)
	if err != nil {
		return res, err
	}
	defer stop()

	p.setPhase("applying")
	lat := newLatencies()
	elapsed := closedLoop(ctx, cfg.Duration, 1, cfg.Writers, func(_ context.Context, _, j int) error {
		t := time.Now()
		if err := rf.Apply(entry, 10*time.Second).Error(); err != nil {
			return err
		}
		lat.record(j, time.Since(t))
		m.ops.Add(1)
		return nil
	}, m)
	res.setRate(m, elapsed)
	res.setLatency(lat.merged())
	r.ceiling = res.OpsPerSec
	return res, nil
}

// ceilingEntry is a raft entry as large as the command of a text message
// of size bytes.
func ceilingEntry(size int) []byte {
	b, _ := proto.Marshal(&pb.Command{TimeMs: time.Now().UnixMilli(), Op: &pb.Command_Send{
		Send: &pb.SendCmd{GroupId: 1001, SenderId: 10001, SenderName: "bench user",
			Type: pb.MessageType_MESSAGE_TYPE_TEXT, Text: strings.Repeat("x", size)}}})
	return b
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

// startCeilingRaft starts a one-node raft in dir, tuned as a schat shard,
// over a trivial state machine, and waits until it leads. stop shuts it
// down and closes its files.
func startCeilingRaft(ctx context.Context, dir string) (*raft.Raft, func(), error) {
	logs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return nil, nil, fmt.Errorf("bench: raft log: %w", err)
	}
	state, err := openBatchFSM(filepath.Join(dir, "state.db"))
	if err != nil {
		logs.Close()
		return nil, nil, err
	}
	stop := func() { logs.Close(); state.db.Close() }
	cached, _ := raft.NewLogCache(512, logs)
	snaps := raft.NewInmemSnapshotStore()
	_, trans := raft.NewInmemTransport("")
	rc := ceilingConfig()
	servers := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: trans.LocalAddr()}}}
	if err := raft.BootstrapCluster(rc, cached, logs, snaps, trans, servers); err != nil {
		stop()
		return nil, nil, fmt.Errorf("bench: bootstrap raft: %w", err)
	}
	rf, err := raft.NewRaft(rc, state, cached, logs, snaps, trans)
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("bench: start raft: %w", err)
	}
	stop = func() { rf.Shutdown().Error(); logs.Close(); state.db.Close() }
	for rf.State() != raft.Leader {
		select {
		case <-ctx.Done():
			stop()
			return nil, nil, ctx.Err()
		case <-rf.LeaderCh():
		case <-time.After(10 * time.Millisecond):
		}
	}
	return rf, stop, nil
}

// ceilingConfig is raft's configuration with a schat node's tuning.
func ceilingConfig() *raft.Config {
	t := node.DefaultConfig().Raft
	c := raft.DefaultConfig()
	c.LocalID = "ceiling"
	c.Logger = hclog.New(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Off})
	c.HeartbeatTimeout, c.ElectionTimeout = t.HeartbeatTimeout, t.ElectionTimeout
	c.LeaderLeaseTimeout = t.HeartbeatTimeout / 2
	c.CommitTimeout, c.MaxAppendEntries = t.CommitTimeout, t.MaxAppendEntries
	c.SnapshotThreshold, c.SnapshotInterval = t.SnapshotThreshold, t.SnapshotInterval
	c.TrailingLogs = t.TrailingLogs
	return c
}

// batchFSM stores every entry of a batch under its index in one bbolt
// transaction: the least a state machine on bbolt does.
type batchFSM struct{ db *bolt.DB }

var entriesBucket = []byte("entries")

func openBatchFSM(path string) (*batchFSM, error) {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return nil, fmt.Errorf("bench: state file: %w", err)
	}
	return &batchFSM{db: db}, nil
}

// ApplyBatch implements raft.BatchingFSM.
func (f *batchFSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	err := f.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(entriesBucket)
		if err != nil {
			return err
		}
		for _, l := range logs {
			if l.Type != raft.LogCommand {
				continue
			}
			if err := b.Put(binary.BigEndian.AppendUint64(nil, l.Index), l.Data); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for i := range out {
			out[i] = err
		}
	}
	return out
}

// Apply implements raft.FSM.
func (f *batchFSM) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// Snapshot implements raft.FSM with an empty snapshot: the ceiling never
// restores.
func (f *batchFSM) Snapshot() (raft.FSMSnapshot, error) { return emptySnapshot{}, nil }

// Restore implements raft.FSM.
func (f *batchFSM) Restore(rc io.ReadCloser) error { return rc.Close() }

type emptySnapshot struct{}

func (emptySnapshot) Persist(s raft.SnapshotSink) error { return s.Close() }
func (emptySnapshot) Release()                          {}
