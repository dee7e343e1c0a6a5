package node

import (
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/schat/schat/fsm"
	pb "github.com/schat/schat/proto"
)

// The owned-groups limit is counted on the meta shard, while the groups
// and their owners live on the group shards. Create, transfer and
// dissolve change the two in separate steps, so a crash or a timeout
// between them leaves the meta shard's record wrong. The group shards are
// the truth: the meta shard's leader compares the two every
// Ownership.Interval and proposes corrections, which Apply makes only
// where the record is still as read and has not been written within
// Ownership.Grace.

// Bounds of one pass: the group IDs compared at a time, and the fixes one
// command carries.
const (
	ownershipWindow  = 1024
	ownershipFixesAt = 256
)

// reconcileOwnership runs one pass over every group ID handed out, as of
// now. It reads local state first and reads the group shards
// linearizably only where they seem to differ, so a pass over agreeing
// records proposes nothing.
func (n *Node) reconcileOwnership(now time.Time) {
	meta := n.shards[metaShard]
	if meta.raft.State() != raft.Leader {
		return
	}
	var last uint64
	meta.fsm.View(func(tx *bolt.Tx) error {
		last = fsm.LastGroupID(tx)
		return nil
	})
	var fixed uint64
	for lo := uint64(0); lo <= last && n.ctx.Err() == nil; lo += ownershipWindow {
		k, err := n.reconcileWindow(now, lo, min(lo+ownershipWindow, last+1))
		fixed += k
		if err != nil {
			n.log.Warn("reconcile owned groups", "err", err)
			break
		}
	}
	if fixed > 0 {
		n.log.Warn("owned groups corrected", "groups", fixed)
	}
}

// reconcileWindow reconciles the groups with IDs in [lo, hi) and returns
// how many records it corrected.
func (n *Node) reconcileWindow(now time.Time, lo, hi uint64) (uint64, error) {
	cutoff := now.Add(-n.cfg.Ownership.Grace).UnixMilli()
	fixes, err := n.ownershipFixes(lo, hi, cutoff, nil)
	if err != nil || len(fixes) == 0 {
		return 0, err
	}
	// The local copies differ: read the shards involved again, after a
	// read barrier, and correct only what still differs there.
	fresh := make(map[uint32]bool)
	for _, fix := range fixes {
		fresh[n.shardOf(fix.GroupId)] = true
	}
	if fixes, err = n.ownershipFixes(lo, hi, cutoff, fresh); err != nil {
		return 0, err
	}
	var fixed uint64
	for len(fixes) > 0 {
		k := min(len(fixes), ownershipFixesAt)
		res, err := n.exec(n.ctx, nil, metaShard, &pb.Command{TimeMs: now.UnixMilli(),
			Op: &pb.Command_ReconcileOwned{ReconcileOwned: &pb.ReconcileOwnedCmd{
				GraceMs: n.cfg.Ownership.Grace.Milliseconds(), Fixes: fixes[:k]}}})
		if err != nil {
			return fixed, err
		}
		fixed += res.Count
		fixes = fixes[k:]
	}
	return fixed, nil
}

// ownershipFixes reads the meta shard's record and then the groups' owners
// for [lo, hi) and compares them. With fresh set, it reads those group
// shards after a read barrier and keeps only the fixes of their groups.
func (n *Node) ownershipFixes(lo, hi uint64, cutoff int64,
	fresh map[uint32]bool) ([]*pb.OwnedFix, error) {
	var owned map[uint64][]*pb.OwnedEntry
	n.shards[metaShard].fsm.View(func(tx *bolt.Tx) error {
		owned = fsm.OwnedInRange(tx, lo, hi)
		return nil
	})
	owners := make(map[uint64]uint64)
	for _, sh := range n.groupShards() {
		if fresh != nil && !fresh[sh] {
			continue
		}
		if fresh != nil {
			if err := n.barrier(n.ctx, sh); err != nil {
				return nil, err
			}
		}
		err := n.shards[sh].fsm.View(func(tx *bolt.Tx) error {
			m, err := fsm.GroupOwnersInRange(tx, lo, hi)
			for gid, owner := range m {
				owners[gid] = owner
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	fixes := fsm.OwnershipFixes(owned, owners, cutoff)
	if fresh == nil {
		return fixes, nil
	}
	kept := fixes[:0]
	for _, fix := range fixes {
		if fresh[n.shardOf(fix.GroupId)] {
			kept = append(kept, fix)
		}
	}
	return kept, nil
}
