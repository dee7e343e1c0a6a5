package fsm

import (
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
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
	// Size is the length of the stream Write writes: the state file and
	// every file content and partial upload it carries, framed.
	Size int64
}

// Export captures the current state. Apply goes on meanwhile.
func (f *FSM) Export() (*Export, error) {
	s, err := f.Snapshot()
	if err != nil {
		return nil, err
	}
	snap := s.(*snapshot)
	e := &Export{snap: snap, Size: snap.streamSize()}
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

// PreviousIncarnation returns the incarnation of the history a meta
// shard's state was restored from (0 if none, or if that history was
// never restored itself).
func PreviousIncarnation(tx *bolt.Tx) uint64 { return storage.PreviousIncarnation(tx) }

// MarkRestored records that the state starts a new history, named by
// incarnation, without moving its applied index: on the meta shard the
// new incarnation (the one it replaces becomes the previous one), on a
// group shard each group's last sequence number, up to which the new
// history and the backup's agree. It is for a restore, before raft is
// started on the state; it is not a replicated change.
func (f *FSM) MarkRestored(incarnation uint64) error {
	f.flush()
	f.mu.RLock()
	defer f.mu.RUnlock()
	err := f.db.Update(func(tx *bolt.Tx) error {
		if f.cfg.Kind == KindMeta {
			return storage.SetIncarnation(tx, incarnation)
		}
		return storage.SetRestoredSeqs(tx, lastSeqs(tx))
	})
	if err != nil {
		return fmt.Errorf("mark restored: %w", err)
	}
	return nil
}

// lastSeqs returns every group's last sequence number.
func lastSeqs(tx *bolt.Tx) map[uint64]uint64 {
	out := make(map[uint64]uint64)
	c := tx.Bucket(storage.Groups).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		var g pb.Group
		if proto.Unmarshal(v, &g) == nil {
			out[storage.ReadU64(k, 0)] = g.LastSeq
		}
	}
	return out
}
