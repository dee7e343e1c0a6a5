package fsm

import (
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/schat/schat/storage"
)

// Export is a consistent view of one shard for a backup: the state at one
// applied index, written out as the same stream a raft snapshot holds, so
// that Restore reads it back. It holds a read transaction until Release.
type Export struct {
	snap *snapshot
	// Index and Term are those of the last entry applied to the state.
	Index, Term uint64
	// Counts are the records of the state.
	Counts storage.Counts
	// Size is the state file's size: the bulk of the stream.
	Size int64
}

// Export captures the current state. Apply goes on meanwhile.
func (f *FSM) Export() (*Export, error) {
	s, err := f.Snapshot()
	if err != nil {
		return nil, err
	}
	snap := s.(*snapshot)
	e := &Export{snap: snap, Size: snap.tx.Size()}
	e.Index, e.Term = storage.Applied(snap.tx)
	e.Counts = countRecords(snap.tx)
	return e, nil
}

// Write writes the snapshot stream to w; it may be called once.
func (e *Export) Write(w io.Writer) error {
	return e.snap.Persist(&writerSink{w: w})
}

// Release ends the read transaction; safe to call more than once.
func (e *Export) Release() { e.snap.Release() }

// countRecords counts the records that a backup's manifest reports. Every
// bucket exists in every shard, empty where it does not belong.
func countRecords(tx *bolt.Tx) storage.Counts {
	n := func(name []byte) uint64 { return uint64(tx.Bucket(name).Stats().KeyN) }
	return storage.Counts{Users: n(storage.Users), Groups: n(storage.Groups),
		Messages: n(storage.Messages), Files: n(storage.Files)}
}

// writerSink lets a snapshot be persisted to a plain writer.
type writerSink struct{ w io.Writer }

func (s *writerSink) Write(p []byte) (int, error) { return s.w.Write(p) }
func (s *writerSink) Close() error                { return nil }
func (s *writerSink) Cancel() error               { return nil }
func (s *writerSink) ID() string                  { return "backup" }

var _ raft.SnapshotSink = (*writerSink)(nil)

// Incarnation returns the incarnation recorded in a meta shard's state
// (0 if it was never restored from a backup).
func Incarnation(tx *bolt.Tx) uint64 { return storage.Incarnation(tx) }

// SetIncarnation records a new incarnation in the state without moving
// its applied index. It is for a restore, before raft is started on the
// state; it is not a replicated change.
func (f *FSM) SetIncarnation(v uint64) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if err := f.db.Update(func(tx *bolt.Tx) error {
		return storage.SetIncarnation(tx, v)
	}); err != nil {
		return fmt.Errorf("set incarnation: %w", err)
	}
	return nil
}
