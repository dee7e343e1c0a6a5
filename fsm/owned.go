package fsm

import (
	"slices"

	bolt "go.etcd.io/bbolt"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/storage"
)

// The meta shard records who owns which group twice: under the owner
// (Owned, which the owned-groups limit counts) and under the group
// (OwnedBy, with when each entry was last written). It is an index of
// what the group shards hold, which are the truth: creating, transferring
// and dissolving a group change it in a step of their own, and a crash
// between the steps leaves it wrong until the meta leader's reconciler
// (ReconcileOwnedCmd) corrects it.

// own records owner as an owner of gid, stamped with the command's time
// and index; writing it again refreshes the stamp.
func own(a *applyCtx, owner, gid uint64) error {
	if err := a.bucket(storage.Owned).Put(storage.U64s(owner, gid), []byte{}); err != nil {
		return err
	}
	return a.bucket(storage.OwnedBy).Put(storage.U64s(gid, owner),
		storage.U64s(uint64(a.now), a.index))
}

// unown deletes owner's entry for gid under both keys.
func unown(a *applyCtx, owner, gid uint64) error {
	if err := a.bucket(storage.Owned).Delete(storage.U64s(owner, gid)); err != nil {
		return err
	}
	return a.bucket(storage.OwnedBy).Delete(storage.U64s(gid, owner))
}

// reconcileOwned applies the fixes whose groups are still as the proposer
// saw them; the result counts the groups whose record changed.
func (f *FSM) reconcileOwned(a *applyCtx, c *pb.ReconcileOwnedCmd) (*Result, error) {
	cutoff := a.now - c.GraceMs
	var changed uint64
	for _, fix := range c.Fixes {
		ok, err := applyOwnedFix(a, fix, cutoff)
		if err != nil {
			return nil, err
		}
		if ok {
			changed++
		}
	}
	return &Result{Count: changed}, nil
}

// applyOwnedFix makes fix.OwnerId the only owner recorded for the group,
// unless its entries changed since the proposer read them or one was
// written after cutoff (a create or transfer may be on its way). It
// reports whether it changed anything.
func applyOwnedFix(a *applyCtx, fix *pb.OwnedFix, cutoff int64) (bool, error) {
	cur := ownedEntries(a.tx, fix.GroupId)
	if !sameEntries(cur, fix.Seen) || !settled(cur, cutoff) {
		return false, nil
	}
	changed, kept := false, false
	for _, e := range cur {
		if e.OwnerId == fix.OwnerId {
			kept = true
			continue
		}
		if err := disown(a, e.OwnerId, fix.GroupId); err != nil {
			return false, err
		}
		changed = true
	}
	if fix.OwnerId != 0 && !kept {
		if err := own(a, fix.OwnerId, fix.GroupId); err != nil {
			return false, err
		}
		changed = true
	}
	return changed, nil
}

// ownedEntries returns the owners recorded for gid, in owner ID order.
func ownedEntries(tx *bolt.Tx, gid uint64) []*pb.OwnedEntry {
	var out []*pb.OwnedEntry
	for _, k := range keysWithPrefix(tx.Bucket(storage.OwnedBy), storage.U64(gid)) {
		out = append(out, ownedEntry(k, tx.Bucket(storage.OwnedBy).Get(k)))
	}
	return out
}

// ownedEntry decodes an OwnedBy record; a value of another length (none
// is written) reads as written at time 0.
func ownedEntry(k, v []byte) *pb.OwnedEntry {
	e := &pb.OwnedEntry{OwnerId: storage.ReadU64(k, 8)}
	if len(v) == 16 {
		e.TimeMs, e.Index = int64(storage.ReadU64(v, 0)), storage.ReadU64(v, 8)
	}
	return e
}

func sameEntries(a, b []*pb.OwnedEntry) bool {
	return slices.EqualFunc(a, b, func(x, y *pb.OwnedEntry) bool {
		return x.OwnerId == y.OwnerId && x.Index == y.Index && x.TimeMs == y.TimeMs
	})
}

// settled reports whether every entry was written at or before cutoff.
func settled(entries []*pb.OwnedEntry, cutoff int64) bool {
	for _, e := range entries {
		if e.TimeMs > cutoff {
			return false
		}
	}
	return true
}

// LastGroupID returns the highest group ID the meta shard has handed out,
// or 0 if none.
func LastGroupID(tx *bolt.Tx) uint64 {
	v := tx.Bucket(storage.Meta).Get(storage.CounterGroup)
	if len(v) != 8 {
		return 0
	}
	return storage.ReadU64(v, 0)
}

// OwnedInRange returns, by group ID, the owners the meta shard records
// for the groups with IDs in [lo, hi).
func OwnedInRange(tx *bolt.Tx, lo, hi uint64) map[uint64][]*pb.OwnedEntry {
	out := make(map[uint64][]*pb.OwnedEntry)
	c := tx.Bucket(storage.OwnedBy).Cursor()
	for k, v := c.Seek(storage.U64(lo)); len(k) == 16; k, v = c.Next() {
		gid := storage.ReadU64(k, 0)
		if gid >= hi {
			break
		}
		out[gid] = append(out[gid], ownedEntry(k, v))
	}
	return out
}

// GroupOwnersInRange returns the owner of each group of a group shard
// with an ID in [lo, hi).
func GroupOwnersInRange(tx *bolt.Tx, lo, hi uint64) (map[uint64]uint64, error) {
	out := make(map[uint64]uint64)
	c := tx.Bucket(storage.Groups).Cursor()
	for k, v := c.Seek(storage.U64(lo)); len(k) == 8; k, v = c.Next() {
		if storage.ReadU64(k, 0) >= hi {
			break
		}
		g, err := decode[pb.Group](k, v)
		if err != nil {
			return nil, err
		}
		out[g.Id] = g.OwnerId
	}
	return out, nil
}

// OwnershipFixes compares the meta shard's entries with the groups'
// owners (both as read for one range of group IDs) and returns, in group
// ID order, a fix for each group where they differ and every entry was
// written at or before cutoffMs.
func OwnershipFixes(owned map[uint64][]*pb.OwnedEntry, owners map[uint64]uint64,
	cutoffMs int64) []*pb.OwnedFix {
	var gids []uint64
	for gid := range owned {
		gids = append(gids, gid)
	}
	for gid := range owners {
		if _, ok := owned[gid]; !ok {
			gids = append(gids, gid)
		}
	}
	slices.Sort(gids)
	var out []*pb.OwnedFix
	for _, gid := range gids {
		seen, owner := owned[gid], owners[gid]
		agree := (owner == 0 && len(seen) == 0) || (len(seen) == 1 && seen[0].OwnerId == owner)
		if !agree && settled(seen, cutoffMs) {
			out = append(out, &pb.OwnedFix{GroupId: gid, OwnerId: owner, Seen: seen})
		}
	}
	return out
}
