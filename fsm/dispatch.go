package fsm

import (
	"bytes"

	bolt "go.etcd.io/bbolt"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/storage"
)

// First values of the ID counters.
const (
	firstUserID   = 10001
	firstGroupID  = 1001
	firstNoticeID = 1
)

// dispatch applies one decoded command to the shard's state. A *pb.Error
// means the command was refused before anything was written; any other
// error is a storage failure.
func (f *FSM) dispatch(a *applyCtx, cmd *pb.Command) (*Result, error) {
	switch f.cfg.Kind {
	case KindMeta:
		return f.applyMeta(a, cmd)
	case KindGroup:
		return f.applyGroup(a, cmd)
	}
	return nil, pb.Errf(pb.Code_INTERNAL, "unknown shard kind %d", f.cfg.Kind)
}

// applyMeta runs a meta shard command.
func (f *FSM) applyMeta(a *applyCtx, cmd *pb.Command) (*Result, error) {
	switch op := cmd.Op.(type) {
	case *pb.Command_Register:
		return f.register(a, nonNil(op.Register))
	case *pb.Command_CreateSession:
		return f.createSession(a, nonNil(op.CreateSession))
	case *pb.Command_DeleteSession:
		return f.deleteSession(a, nonNil(op.DeleteSession))
	case *pb.Command_ChangePassword:
		return f.changePassword(a, nonNil(op.ChangePassword))
	case *pb.Command_UpdateProfile:
		return f.updateProfile(a, nonNil(op.UpdateProfile))
	case *pb.Command_ReserveGroup:
		return f.reserveGroup(a, nonNil(op.ReserveGroup))
	case *pb.Command_ReleaseGroup:
		return f.releaseGroup(a, nonNil(op.ReleaseGroup))
	case *pb.Command_MoveOwnership:
		return f.moveOwnership(a, nonNil(op.MoveOwnership))
	case *pb.Command_PruneSessions:
		return f.pruneSessions(a)
	case *pb.Command_ReconcileOwned:
		return f.reconcileOwned(a, nonNil(op.ReconcileOwned))
	}
	return f.applyFile(a, cmd, "meta")
}

// applyGroup runs a group shard command.
func (f *FSM) applyGroup(a *applyCtx, cmd *pb.Command) (*Result, error) {
	switch op := cmd.Op.(type) {
	case *pb.Command_CreateGroup:
		return f.createGroup(a, nonNil(op.CreateGroup))
	case *pb.Command_Apply:
		return f.apply(a, nonNil(op.Apply))
	case *pb.Command_Decide:
		return f.decide(a, nonNil(op.Decide))
	case *pb.Command_Leave:
		return f.leave(a, nonNil(op.Leave))
	case *pb.Command_Dissolve:
		return f.dissolve(a, nonNil(op.Dissolve))
	case *pb.Command_Transfer:
		return f.transfer(a, nonNil(op.Transfer))
	case *pb.Command_UpdateGroup:
		return f.updateGroup(a, nonNil(op.UpdateGroup))
	case *pb.Command_Send:
		return f.send(a, nonNil(op.Send))
	case *pb.Command_Recall:
		return f.recall(a, nonNil(op.Recall))
	case *pb.Command_MarkRead:
		return f.markRead(a, nonNil(op.MarkRead))
	case *pb.Command_AckNotices:
		return f.ackNotices(a, nonNil(op.AckNotices))
	case *pb.Command_Trim:
		return f.trim(a, nonNil(op.Trim))
	}
	return f.applyFile(a, cmd, "group")
}

// applyFile runs an upload command, which either kind of shard takes.
func (f *FSM) applyFile(a *applyCtx, cmd *pb.Command, kind string) (*Result, error) {
	switch op := cmd.Op.(type) {
	case *pb.Command_FileBegin:
		return f.fileBegin(a, nonNil(op.FileBegin))
	case *pb.Command_FileChunk:
		return f.fileChunk(a, nonNil(op.FileChunk))
	case *pb.Command_FileCommit:
		return f.fileCommit(a, nonNil(op.FileCommit))
	case *pb.Command_FileAbort:
		return f.fileAbort(a, nonNil(op.FileAbort))
	case *pb.Command_FileSweep:
		return f.fileSweep(a, nonNil(op.FileSweep))
	}
	return nil, wrongShard(cmd, kind)
}

// wrongShard refuses a command the shard does not hold (or an empty one):
// it is a routing mistake of the proposer, never a client's.
func wrongShard(cmd *pb.Command, kind string) error {
	if cmd.Op == nil {
		return pb.Errf(pb.Code_INTERNAL, "command without an operation")
	}
	return pb.Errf(pb.Code_INTERNAL, "%T is not a %s shard command", cmd.Op, kind)
}

// nonNil returns p, or a new zero value when p is nil, so that rules never
// meet a nil command body.
func nonNil[T any](p *T) *T {
	if p == nil {
		return new(T)
	}
	return p
}

// bucket returns the named bucket of the entry's transaction.
func (a *applyCtx) bucket(name []byte) *bolt.Bucket { return a.tx.Bucket(name) }

// has reports whether key is present in b. It does not look at the value,
// which for the set-like buckets is empty.
func has(b *bolt.Bucket, key []byte) bool {
	k, _ := b.Cursor().Seek(key)
	return k != nil && bytes.Equal(k, key)
}

// keysWithPrefix returns copies of the keys of b that start with prefix, in
// order. Callers that delete collect first: deleting under a cursor that
// then moves on can skip keys.
func keysWithPrefix(b *bolt.Bucket, prefix []byte) [][]byte {
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	return keys
}

// checkKey refuses a client-chosen key part that bbolt cannot store, so
// that a bad proposal is refused on every replica instead of panicking it.
func checkKey(what string, key []byte) error {
	if len(key) == 0 {
		return pb.Errf(pb.Code_INVALID_ARGUMENT, "empty %s", what)
	}
	// Room for the 16 bytes of IDs some keys put in front.
	if len(key)+16 > bolt.MaxKeySize {
		return pb.Errf(pb.Code_TOO_LONG, "%s of %d bytes", what, len(key))
	}
	return nil
}

// idKey is the key of a record named by two IDs followed by free bytes.
func idKey(a, b uint64, rest []byte) []byte {
	return append(storage.U64s(a, b), rest...)
}
