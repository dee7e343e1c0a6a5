package transport

import (
	"sync"

	pb "github.com/schat/schat/proto"
)

// writeIndexes keeps, per shard, the highest raft index of a write the
// server acknowledged to a client. Raft indexes are the same on every node
// of a cluster, so a resume on another node that names them lets that
// node wait until it holds those writes before it serves reads. A Session
// shares one among all its connections. Safe for concurrent use.
type writeIndexes struct {
	mu    sync.Mutex
	index map[uint32]uint64
}

func newWriteIndexes() *writeIndexes {
	return &writeIndexes{index: make(map[uint32]uint64)}
}

// note raises the indexes to the writes a response names.
func (w *writeIndexes) note(writes []*pb.ShardIndex) {
	if len(writes) == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, x := range writes {
		w.index[x.Shard] = max(w.index[x.Shard], x.Index)
	}
}

// list returns the indexes in the form a resume request carries them.
func (w *writeIndexes) list() []*pb.ShardIndex {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]*pb.ShardIndex, 0, len(w.index))
	for shard, index := range w.index {
		out = append(out, &pb.ShardIndex{Shard: shard, Index: index})
	}
	return out
}
