// Package fsm is schat's replicated state machine: every chat rule, applied
// to a shard's bbolt state from the commands in that shard's raft log.
//
// Apply is deterministic. It reads only the command (whose time and IDs the
// proposer stamped) and the stored state; it records the applied raft index
// in the same bbolt transaction as the change, so after a restart entries at
// or below that index are skipped rather than applied twice. A raft batch is
// applied in one transaction.
package fsm

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/storage"
)

// Kind says which commands a shard accepts.
type Kind int

const (
	// KindMeta is the shard of accounts, sessions and ID counters.
	KindMeta Kind = iota
	// KindGroup is a shard holding a hash share of the groups.
	KindGroup
)

// Config configures one shard's state machine.
type Config struct {
	// Path of the bbolt state file.
	Path string
	// FilesDir holds the shard's file contents; it defaults to "files"
	// beside Path.
	FilesDir string
	// Kind of the shard.
	Kind Kind
	// Shard is the shard's number (0 for meta, 1..K for group shards). It
	// goes into the low bits of the notice IDs a shard hands out, so that
	// an ID names the shard that holds the notice.
	Shard uint32
	// Publish, if set, receives the events of each applied batch in log
	// order, on raft's FSM goroutine; it must not block. It is called as
	// soon as the batch is applied, before the state file commits it: the
	// batch's entries are committed in the raft log already, so what the
	// events tell survives a crash (the entries are applied again on
	// restart, with the same outcome), and View commits whatever was
	// applied before it reads, so whoever saw an event reads a state that
	// holds it. A batch that revokes sessions is published only once the
	// state file holds it, so that a revoked token is refused as soon as
	// its connections end.
	Publish func(events []Event)
	// CommitDelay is how long applied entries may wait in the open state
	// transaction before it commits (see commit.go); it defaults to
	// DefaultCommitDelay.
	CommitDelay time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Event is a change to push to online users: to the online members of
// GroupID (if non-zero) and to Users. Membership events are delivered to the
// group as it was before the change and to the user concerned.
type Event struct {
	GroupID uint64
	Users   []uint64
	Event   *pb.Event // nil for a pure session revocation

	// Revoke asks every node to end the connections of Users that are
	// authenticated with token hash RevokeToken, or, when RevokeToken is
	// nil, all their connections except those with token hash KeepToken.
	Revoke      bool
	RevokeToken []byte
	KeepToken   []byte
}

// NoticeShardBits is how many low bits of a notice ID hold the shard number.
const NoticeShardBits = 10

// FSM is one shard's state machine. Apply, ApplyBatch, Snapshot and Restore
// are called by raft from its FSM goroutine; View, AppliedIndex and
// WaitApplied may be called from any goroutine.
type FSM struct {
	cfg Config
	log *slog.Logger

	// mu guards db against replacement by Restore: readers hold it shared.
	mu    sync.RWMutex
	db    *bolt.DB
	files *storage.FileStore

	// txMu guards pend, the open state transaction, and is held while a
	// batch is applied in it; it is taken before mu. timer commits pend
	// once it has waited CommitDelay.
	txMu  sync.Mutex
	pend  *pending
	timer *time.Timer

	applied      atomic.Uint64 // the last entry applied, committed or not
	committed    atomic.Uint64 // the last entry the state file holds
	commits      atomic.Uint64 // state commits since Open
	largestBatch atomic.Int64  // bytes of entry data in the largest batch applied
	waitMu       sync.Mutex
	waitCh       chan struct{} // closed and replaced whenever applied moves
}

// Open opens the state file named in cfg.
func Open(cfg Config) (*FSM, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CommitDelay <= 0 {
		cfg.CommitDelay = DefaultCommitDelay
	}
	if cfg.FilesDir == "" {
		cfg.FilesDir = filepath.Join(filepath.Dir(cfg.Path), "files")
	}
	files, err := storage.NewFileStore(cfg.FilesDir)
	if err != nil {
		return nil, err
	}
	db, err := storage.OpenState(cfg.Path)
	if err != nil {
		return nil, err
	}
	f := &FSM{cfg: cfg, log: cfg.Logger, db: db, files: files, waitCh: make(chan struct{})}
	if err := f.collectFiles(); err != nil {
		db.Close()
		return nil, err
	}
	var index uint64
	db.View(func(tx *bolt.Tx) error {
		index, _ = storage.Applied(tx)
		return nil
	})
	f.applied.Store(index)
	f.committed.Store(index)
	f.timer = time.AfterFunc(time.Hour, f.flush)
	f.timer.Stop()
	return f, nil
}

// collectFiles deletes the contents and partial uploads the state does
// not name: what a crash left between a commit and its deletions.
func (f *FSM) collectFiles() error {
	return f.db.View(func(tx *bolt.Tx) error {
		blobs, uploads := tx.Bucket(storage.Blobs), tx.Bucket(storage.Uploads)
		err := f.files.Collect(func(sum []byte) bool { return blobs.Get(sum) != nil },
			func(key []byte) bool { return uploads.Get(key) != nil })
		if err != nil {
			return fmt.Errorf("collect files: %w", err)
		}
		return nil
	})
}

// FilesDir is the directory of the shard's file contents.
func (f *FSM) FilesDir() string { return f.cfg.FilesDir }

// BlobPath is the path of the content with SHA-256 sumHex. It exists
// while a committed file with that content does.
func (f *FSM) BlobPath(sumHex string) (string, error) {
	sum, err := hex.DecodeString(sumHex)
	if err != nil || len(sum) != 32 {
		return "", fmt.Errorf("%w: bad SHA-256 %q", storage.ErrFormat, sumHex)
	}
	return f.files.BlobPath(sum), nil
}

// Close commits what is applied and closes the state file.
func (f *FSM) Close() error {
	f.flush()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.db.Close()
}

// View runs fn in a read transaction over the current state, once the
// state file holds every entry applied so far.
func (f *FSM) View(fn func(*bolt.Tx) error) error {
	f.visibleAt(f.applied.Load())
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.db.View(fn)
}

// LargestBatch is the size, in bytes of entry data, of the largest batch
// ApplyBatch has been given since Open: what one batch held in memory.
func (f *FSM) LargestBatch() int64 { return f.largestBatch.Load() }

// noteBatch records the size of logs and returns it.
func (f *FSM) noteBatch(logs []*raft.Log) int64 {
	var size int64
	for _, l := range logs {
		size += int64(len(l.Data))
	}
	for {
		old := f.largestBatch.Load()
		if size <= old || f.largestBatch.CompareAndSwap(old, size) {
			return size
		}
	}
}

// Commits is the number of state transactions committed since Open.
func (f *FSM) Commits() uint64 { return f.commits.Load() }

// AppliedIndex is the raft index of the last entry applied to the state,
// which View sees.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// WaitApplied blocks until the state reflects raft index index or ctx ends.
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	for {
		f.waitMu.Lock()
		ch := f.waitCh
		f.waitMu.Unlock()
		if f.applied.Load() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (f *FSM) setApplied(index uint64) {
	f.applied.Store(index)
	f.waitMu.Lock()
	close(f.waitCh)
	f.waitCh = make(chan struct{})
	f.waitMu.Unlock()
}

// Apply applies a single entry; raft calls ApplyBatch instead, since FSM
// implements raft.BatchingFSM.
func (f *FSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies a batch of committed entries in the open state
// transaction and returns, for each command entry, a *Result, or a
// []*Result for an entry holding a CommandBatch (nil for entries skipped or
// not commands). The batch's events are published once it is applied (see
// Config.Publish).
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	size := f.noteBatch(logs)
	out := make([]interface{}, len(logs))
	last, events, err := f.applyBatch(logs, size, out)
	if err != nil {
		// The state can no longer follow the log; continuing would let
		// replicas diverge.
		panic(fmt.Sprintf("fsm: apply batch ending at %d: %v", logs[len(logs)-1].Index, err))
	}
	if last != nil {
		f.setApplied(last.Index)
		if len(events) > 0 && f.cfg.Publish != nil {
			f.cfg.Publish(events)
		}
	}
	return out
}

// applyBatch applies logs in the open transaction, committing it if it is
// due. It returns the last entry applied (nil if none was new) and the
// events. It releases txMu before the events are published, so that a
// reader holding what Publish waits for can still commit and read.
func (f *FSM) applyBatch(logs []*raft.Log, size int64, out []interface{}) (
	*raft.Log, []Event, error) {
	f.txMu.Lock()
	defer f.txMu.Unlock()
	p, err := f.openTx()
	if err != nil {
		return nil, nil, err
	}
	fx := newFileEffects(f.files)
	defer fx.chunks.Close()
	last, events, err := f.applyLogs(p.tx, logs, out, fx)
	if err != nil || last == nil {
		return nil, nil, err
	}
	p.last = last
	p.bytes += size
	p.partials = append(p.partials, fx.partials...)
	p.zeroed = append(p.zeroed, fx.zeroed...)
	if f.dueNow(p, events) {
		f.commitLocked()
	}
	return last, events, nil
}

// applyLogs applies the entries of logs above the applied index in tx and
// records the last one as applied. It returns that entry (nil if none was
// new) and the events to publish.
func (f *FSM) applyLogs(tx *bolt.Tx, logs []*raft.Log, out []interface{},
	fx *fileEffects) (last *raft.Log, events []Event, err error) {
	applied, _ := storage.Applied(tx)
	for i, l := range logs {
		if l.Index <= applied {
			continue
		}
		last = l
		if l.Type != raft.LogCommand {
			continue
		}
		a := &applyCtx{tx: tx, index: l.Index, fx: fx}
		out[i] = f.applyEntry(a, l)
		events = append(events, a.events...)
	}
	if last == nil {
		return nil, nil, nil
	}
	// Chunks written by the batch are durable before the state that
	// counts them commits.
	if err := fx.chunks.Sync(); err != nil {
		return nil, nil, err
	}
	return last, events, storage.SetApplied(tx, last.Index, last.Term)
}

// revokes reports whether events end sessions.
func revokes(events []Event) bool {
	for _, e := range events {
		if e.Revoke {
			return true
		}
	}
	return false
}

// applyEntry decodes and applies one log entry: a command, whose result
// is a *Result, or a batch of commands, whose result is a []*Result. A
// storage error panics: the state can no longer follow the log.
func (f *FSM) applyEntry(a *applyCtx, l *raft.Log) interface{} {
	var cmd pb.Command
	if err := proto.Unmarshal(l.Data, &cmd); err != nil {
		panic(fmt.Sprintf("fsm: undecodable entry %d: %v", l.Index, err))
	}
	b := cmd.GetBatch()
	if b == nil {
		return f.applyCommand(a, &cmd)
	}
	out := make([]*Result, len(b.Commands))
	for i, c := range b.Commands {
		sub := &applyCtx{tx: a.tx, index: a.index, fx: a.fx}
		out[i] = f.applyCommand(sub, c)
		a.events = append(a.events, sub.events...)
	}
	return out
}

// applyCommand applies one command. A refusal changes nothing, so its
// events are dropped.
func (f *FSM) applyCommand(a *applyCtx, cmd *pb.Command) *Result {
	a.now = cmd.TimeMs
	res, err := f.dispatch(a, cmd)
	if err != nil {
		var ce *pb.Error
		if errors.As(err, &ce) {
			a.events = nil
			return &Result{Code: ce.Code, Detail: ce.Detail}
		}
		panic(fmt.Sprintf("fsm: apply entry %d: %v", a.index, err))
	}
	return res
}
