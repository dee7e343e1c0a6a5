package storage

import (
	"encoding/binary"

	bolt "go.etcd.io/bbolt"
)

// keyIncarnation, in the meta shard's Meta bucket, names the history the
// state belongs to. It is absent (zero) in a deployment never restored; a
// restore from a backup sets a new random value, so that clients can tell
// that sequence numbers and cursors may have gone back.
var keyIncarnation = []byte("incarnation")

// Incarnation returns the incarnation recorded in tx, or 0.
func Incarnation(tx *bolt.Tx) uint64 {
	v := tx.Bucket(Meta).Get(keyIncarnation)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// SetIncarnation records the incarnation.
func SetIncarnation(tx *bolt.Tx, v uint64) error {
	return tx.Bucket(Meta).Put(keyIncarnation, U64(v))
}
