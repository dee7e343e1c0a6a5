package storage

import (
	"encoding/binary"

	bolt "go.etcd.io/bbolt"
)

// A restore from a backup starts a new history that shares a prefix with
// the one the backup was taken from. Three records, written only by a
// restore, let clients tell how much:
//
//   - keyIncarnation, in the meta shard's Meta bucket, names the history.
//     It is absent (zero) in a deployment never restored; each restore
//     sets a new random value.
//   - keyPrevIncarnation, beside it, is the incarnation the backup's
//     history had.
//   - the Restored bucket of each group shard holds, per group, its last
//     sequence number at the restore: the end of the shared prefix.
var (
	keyIncarnation     = []byte("incarnation")
	keyPrevIncarnation = []byte("previous_incarnation")
)

// Incarnation returns the incarnation recorded in tx, or 0.
func Incarnation(tx *bolt.Tx) uint64 { return metaU64(tx, keyIncarnation) }

// PreviousIncarnation returns the incarnation of the history the state
// was restored from, or 0.
func PreviousIncarnation(tx *bolt.Tx) uint64 { return metaU64(tx, keyPrevIncarnation) }

// SetIncarnation records a new incarnation, keeping the one it replaces as
// the previous incarnation.
func SetIncarnation(tx *bolt.Tx, v uint64) error {
	m := tx.Bucket(Meta)
	if err := m.Put(keyPrevIncarnation, U64(Incarnation(tx))); err != nil {
		return err
	}
	return m.Put(keyIncarnation, U64(v))
}

// RestoredSeq returns group gid's last sequence number at the last
// restore, or 0 if it did not exist then.
func RestoredSeq(tx *bolt.Tx, gid uint64) uint64 {
	v := tx.Bucket(Restored).Get(U64(gid))
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// SetRestoredSeqs replaces the Restored bucket with seqs (group ID ->
// last sequence number).
func SetRestoredSeqs(tx *bolt.Tx, seqs map[uint64]uint64) error {
	if err := tx.DeleteBucket(Restored); err != nil {
		return err
	}
	b, err := tx.CreateBucket(Restored)
	if err != nil {
		return err
	}
	for gid, seq := range seqs {
		if err := b.Put(U64(gid), U64(seq)); err != nil {
			return err
		}
	}
	return nil
}

func metaU64(tx *bolt.Tx, key []byte) uint64 {
	v := tx.Bucket(Meta).Get(key)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}
