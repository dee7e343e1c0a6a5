package node

import (
	"time"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"
)

// OpenRaftLog opens (creating if needed) a shard's raft log and stable
// store at path. Every commit is fsynced as raft requires; the freelist is
// kept in memory only and rebuilt when the file is opened, so that a
// commit writes its log entries and the pages above them but not the list
// of free pages, which the log's truncations after snapshots keep long.
// The load generator's ceiling opens its raft log here too, so that it
// measures the same store.
func OpenRaftLog(path string) (*raftboltdb.BoltStore, error) {
	return raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &bolt.Options{
		Timeout:        5 * time.Second,
		FreelistType:   bolt.FreelistMapType,
		NoFreelistSync: true,
	}})
}
