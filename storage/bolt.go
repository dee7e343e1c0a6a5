package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

// Bucket names. The meta shard uses the account buckets, group shards the
// group buckets; both use Meta.
var (
	// Meta holds the applied index and term, counters and the format.
	Meta = []byte("meta")

	// Meta shard.
	Users        = []byte("users")         // user id -> pb.User
	Logins       = []byte("logins")        // folded login name -> user id
	Sessions     = []byte("sessions")      // token hash -> pb.Session
	UserSessions = []byte("user_sessions") // user id + token hash -> nil
	Owned        = []byte("owned")         // owner id + group id -> nil
	OwnedBy      = []byte("owned_by")      // group id + owner id -> time ms + raft index
	Reservations = []byte("reservations")  // owner id + request key -> group id

	// Group shards.
	Groups     = []byte("groups")      // group id -> pb.Group
	Members    = []byte("members")     // group id + user id -> pb.Member
	UserGroups = []byte("user_groups") // user id + group id -> nil
	Apps       = []byte("apps")        // group id + user id -> pb.Application
	Messages   = []byte("messages")    // group id + seq -> pb.ChatMessage
	Dedup      = []byte("dedup")       // group id + sender id + client id -> seq
	Notices    = []byte("notices")     // user id + notice id -> pb.Notice
	Public     = []byte("public")      // group id -> nil
	Purge      = []byte("purge")       // dissolved group id -> nil, until its records are gone
	Restored   = []byte("restored")    // group id -> last seq at the last restore

	// Both kinds of shard: uploads and the files they became.
	Files   = []byte("files")   // file key -> pb.StoredFile
	Uploads = []byte("uploads") // file key -> pb.Upload
	Blobs   = []byte("blobs")   // SHA-256 -> count of files with that content
	Thumbs  = []byte("thumbs")  // file key -> JPEG thumbnail, for uploads and files

	allBuckets = [][]byte{Meta, Users, Logins, Sessions, UserSessions, Owned,
		OwnedBy, Reservations, Groups, Members, UserGroups, Apps, Messages, Dedup,
		Notices, Public, Purge, Restored, Files, Uploads, Blobs,
		Thumbs}
)

// Keys inside the Meta bucket.
var (
	keyApplied = []byte("applied") // index(8) + term(8)
	keyFormat  = []byte("format")
)

// Counter names inside the Meta bucket.
var (
	CounterUser   = []byte("next_user")
	CounterGroup  = []byte("next_group")
	CounterNotice = []byte("next_notice")
)

// FormatVersion is the version of the bucket layout this code writes.
const FormatVersion = 1

// Errors returned by this package.
var (
	// ErrFormat means a state file was written by an incompatible version.
	ErrFormat = errors.New("storage: unknown state format")
)

// OpenState opens (creating if needed) a shard's bbolt state file and makes
// sure every bucket exists.
func OpenState(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: 5 * time.Second,
		// A large initial mapping keeps writers from waiting on a remap
		// while a snapshot holds a long read transaction.
		InitialMmapSize: 1 << 30,
		FreelistType:    bolt.FreelistMapType,
		NoFreelistSync:  true,
	})
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	if err := db.Update(initBuckets); err != nil {
		db.Close()
		return nil, fmt.Errorf("init state %s: %w", path, err)
	}
	return db, nil
}

func initBuckets(tx *bolt.Tx) error {
	backfill := tx.Bucket(Owned) != nil && tx.Bucket(OwnedBy) == nil
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	if backfill {
		if err := backfillOwnedBy(tx); err != nil {
			return err
		}
	}
	m := tx.Bucket(Meta)
	v := m.Get(keyFormat)
	if v == nil {
		return m.Put(keyFormat, U64(FormatVersion))
	}
	if got := binary.BigEndian.Uint64(v); got != FormatVersion {
		return fmt.Errorf("%w: %d", ErrFormat, got)
	}
	return nil
}

// backfillOwnedBy indexes by group the Owned entries of a state written
// before OwnedBy existed. The entries get time and index 0: written long
// ago. Every replica derives the same index from the same entries.
func backfillOwnedBy(tx *bolt.Tx) error {
	by := tx.Bucket(OwnedBy)
	return tx.Bucket(Owned).ForEach(func(k, _ []byte) error {
		if len(k) != 16 {
			return fmt.Errorf("%w: owned key %x", ErrFormat, k)
		}
		return by.Put(append(bytes.Clone(k[8:]), k[:8]...), U64s(0, 0))
	})
}

// RemoveState deletes a state file; used when a restore replaces it.
func RemoveState(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Applied returns the raft index and term of the last entry applied to the
// state in tx.
func Applied(tx *bolt.Tx) (index, term uint64) {
	v := tx.Bucket(Meta).Get(keyApplied)
	if len(v) != 16 {
		return 0, 0
	}
	return binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])
}

// SetApplied records the last applied raft index and term; it is written in
// the same transaction as the entries' changes.
func SetApplied(tx *bolt.Tx, index, term uint64) error {
	return tx.Bucket(Meta).Put(keyApplied, U64s(index, term))
}

// NextID increments the named counter and returns its new value; the first
// value is start.
func NextID(tx *bolt.Tx, name []byte, start uint64) (uint64, error) {
	m := tx.Bucket(Meta)
	next := start
	if v := m.Get(name); len(v) == 8 {
		next = binary.BigEndian.Uint64(v) + 1
	}
	return next, m.Put(name, U64(next))
}

// U64 encodes v big-endian, so keys sort numerically.
func U64(v uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v)
}

// U64s encodes several values one after another.
func U64s(vs ...uint64) []byte {
	b := make([]byte, 0, 8*len(vs))
	for _, v := range vs {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return b
}

// ReadU64 decodes the 8 bytes at b[off:].
func ReadU64(b []byte, off int) uint64 {
	return binary.BigEndian.Uint64(b[off : off+8])
}

// Get decodes the record at key into m; it reports whether one was there.
func Get(b *bolt.Bucket, key []byte, m proto.Message) (bool, error) {
	v := b.Get(key)
	if v == nil {
		return false, nil
	}
	if err := proto.Unmarshal(v, m); err != nil {
		return true, fmt.Errorf("decode record %x: %w", key, err)
	}
	return true, nil
}

// Put encodes m and stores it at key.
func Put(b *bolt.Bucket, key []byte, m proto.Message) error {
	v, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return err
	}
	return b.Put(key, v)
}
