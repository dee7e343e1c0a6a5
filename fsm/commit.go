package fsm

import (
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/schat/schat/storage"
)

// Applied batches share a state transaction. An entry is durable once it
// is in the fsynced raft log of a majority, before raft hands it to the
// state machine, so committing the state file after every batch adds a
// second fsynced commit to each entry's path without making anything
// safer. Instead the batches applied within CommitDelay go into one open
// transaction, which commits when the delay has passed, when it holds
// commitMaxBytes of entry data, before a read, a snapshot, a restore or a
// close, and at once when a batch revokes sessions. A crash loses the open
// transaction and nothing else: the state file keeps the index of its last
// commit, and raft applies the entries after it again on restart.
//
// This keeps the cost of a shard in fsyncs per interval rather than per
// entry, so that many shards on one node, each with its own small entries,
// do not multiply the state commits.

// DefaultCommitDelay is how long applied entries wait, at most, in the open
// state transaction when nothing asks for them earlier.
const DefaultCommitDelay = 50 * time.Millisecond

// commitMaxBytes bounds the entry data applied in one open transaction,
// and so the pages it keeps in memory until it commits.
const commitMaxBytes = 8 << 20

// pending is the open state transaction and what its commit is to do.
type pending struct {
	tx    *bolt.Tx
	began time.Time
	last  *raft.Log // the last entry applied in tx
	bytes int64     // entry data applied in tx

	// Files the transaction stops referring to, removed once it commits:
	// upload keys whose partial files go, and sums of contents that some
	// command left uncounted (a later one may count them again).
	partials [][]byte
	zeroed   [][]byte
}

// openTx returns the open state transaction, beginning one if there is
// none. The caller holds txMu.
func (f *FSM) openTx() (*pending, error) {
	if f.pend != nil {
		return f.pend, nil
	}
	tx, err := f.db.Begin(true)
	if err != nil {
		return nil, err
	}
	f.pend = &pending{tx: tx, began: time.Now()}
	f.timer.Reset(f.cfg.CommitDelay)
	return f.pend, nil
}

// dueNow reports whether the open transaction commits at the end of the
// batch just applied rather than later.
func (f *FSM) dueNow(p *pending, events []Event) bool {
	return revokes(events) || p.bytes >= commitMaxBytes ||
		time.Since(p.began) >= f.cfg.CommitDelay
}

// flush commits the open transaction, if any.
func (f *FSM) flush() {
	f.txMu.Lock()
	defer f.txMu.Unlock()
	f.commitLocked()
}

// commitLocked commits the open transaction and removes the files it no
// longer refers to. The caller holds txMu. A failed commit panics: the
// state can no longer follow the log.
func (f *FSM) commitLocked() {
	p := f.pend
	if p == nil {
		return
	}
	f.pend = nil
	f.timer.Stop()
	if p.last == nil {
		p.tx.Rollback()
		return
	}
	doomed := uncounted(p.tx, p.zeroed)
	if err := p.tx.Commit(); err != nil {
		panic(fmt.Sprintf("fsm: commit state at %d: %v", p.last.Index, err))
	}
	f.committed.Store(p.last.Index)
	f.commits.Add(1)
	if err := removeDropped(f.files, p.partials, doomed); err != nil {
		f.log.Warn("file cleanup after commit", "err", err)
	}
}

// uncounted returns the sums of zeroed that no file counts in tx.
func uncounted(tx *bolt.Tx, zeroed [][]byte) [][]byte {
	var out [][]byte
	b := tx.Bucket(storage.Blobs)
	for _, sum := range zeroed {
		if b.Get(sum) == nil {
			out = append(out, sum)
		}
	}
	return out
}

// visibleAt makes sure the state file holds the entries up to index,
// committing the open transaction if they are in it.
func (f *FSM) visibleAt(index uint64) {
	if f.committed.Load() >= index {
		return
	}
	f.flush()
}
