package fsm

import (
	"bytes"

	bolt "go.etcd.io/bbolt"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/storage"
)

// DefaultTrimBatch is the number of records a TrimCmd without a bound
// removes at most.
const DefaultTrimBatch = 1000

// Two things leave records for a group shard to remove later, in bounded
// batches of TrimCmd that the shard's leader proposes: a dissolve, which
// takes the group away at once but leaves its messages, dedup keys and
// files (its ID marked in Purge), and the retention limits, which a
// group's oldest messages outgrow. Each command removes at most its
// max_records, so no transaction grows with a group's history.

// trim works through the command's groups until it has removed its
// budget of records; the result counts the records removed.
func (f *FSM) trim(a *applyCtx, c *pb.TrimCmd) (*Result, error) {
	budget := int(c.MaxRecords)
	if budget < 1 {
		budget = DefaultTrimBatch
	}
	done := 0
	for _, gid := range c.GroupIds {
		if done >= budget {
			break
		}
		n, err := trimGroup(a, gid, c, budget-done)
		if err != nil {
			return nil, err
		}
		done += n
	}
	return &Result{Count: uint64(done)}, nil
}

// trimGroup removes up to budget records of group gid: what is left of
// it if it was dissolved, else the messages past the limits.
func trimGroup(a *applyCtx, gid uint64, c *pb.TrimCmd, budget int) (int, error) {
	if has(a.bucket(storage.Purge), storage.U64(gid)) {
		return purgeGroup(a, gid, budget)
	}
	g, err := GetGroup(a.tx, gid)
	if err != nil || g == nil {
		return 0, err
	}
	return trimMessages(a, g, c, budget)
}

// trimMessages removes g's oldest messages that c's limits no longer
// keep, each with its dedup key and its reference to a file, and stores
// how far it got in g. A message and its dedup key count as two records;
// the first message goes whatever the budget, so that a trim always
// makes progress.
func trimMessages(a *applyCtx, g *pb.Group, c *pb.TrimCmd, budget int) (int, error) {
	removed := 0
	for g.TrimmedSeq < g.LastSeq {
		m, err := getMessage(a.tx, g.Id, g.TrimmedSeq+1)
		if err != nil {
			return 0, err
		}
		if m != nil && !outgrown(m, g, c, a.now) {
			break
		}
		cost := 1
		if m.GetClientMsgId() != "" {
			cost = 2
		}
		if removed > 0 && removed+cost > budget {
			break
		}
		if m != nil {
			if err := dropMessage(a, g.Id, m); err != nil {
				return 0, err
			}
		}
		g.TrimmedSeq++
		removed += cost
	}
	if removed == 0 {
		return 0, nil
	}
	return removed, putGroup(a, g)
}

// outgrown reports whether message m of g is past c's limits at nowMs:
// not among the newest MaxMessages, or older than MaxAgeMs.
func outgrown(m *pb.ChatMessage, g *pb.Group, c *pb.TrimCmd, nowMs int64) bool {
	return (c.MaxMessages > 0 && m.Seq+c.MaxMessages <= g.LastSeq) ||
		(c.MaxAgeMs > 0 && m.TimeMs < nowMs-c.MaxAgeMs)
}

// dropMessage deletes message m of group gid with its dedup key, and
// releases the file it refers to. A retry of a send whose message is gone
// lands again.
func dropMessage(a *applyCtx, gid uint64, m *pb.ChatMessage) error {
	if err := releaseFile(a, m.GetFile().GetFileId()); err != nil {
		return err
	}
	if m.ClientMsgId != "" {
		dkey := idKey(gid, m.SenderId, []byte(m.ClientMsgId))
		dedup := a.bucket(storage.Dedup)
		if v := dedup.Get(dkey); len(v) == 8 && storage.ReadU64(v, 0) == m.Seq {
			if err := dedup.Delete(dkey); err != nil {
				return err
			}
		}
	}
	return a.bucket(storage.Messages).Delete(storage.U64s(gid, m.Seq))
}

// purgeGroup removes up to budget records of dissolved group gid:
// messages, dedup keys, files and uploads, in that order, and then its
// Purge mark, which counts as one.
func purgeGroup(a *applyCtx, gid uint64, budget int) (int, error) {
	prefix := storage.U64(gid)
	steps := []func(max int) (int, error){
		func(max int) (int, error) { return deleteKeys(a.bucket(storage.Messages), prefix, max) },
		func(max int) (int, error) { return deleteKeys(a.bucket(storage.Dedup), prefix, max) },
		func(max int) (int, error) { return dropFiles(a, prefix, max) },
		func(max int) (int, error) {
			return eachKey(a.bucket(storage.Uploads), prefix, max, func(k []byte) error {
				return dropUpload(a, k)
			})
		},
	}
	removed := 0
	for _, step := range steps {
		n, err := step(budget - removed)
		if err != nil {
			return 0, err
		}
		if removed += n; removed >= budget {
			return removed, nil
		}
	}
	return removed + 1, a.bucket(storage.Purge).Delete(prefix)
}

// deleteKeys deletes up to max keys of b that start with prefix and
// returns how many it deleted.
func deleteKeys(b *bolt.Bucket, prefix []byte, max int) (int, error) {
	return eachKey(b, prefix, max, b.Delete)
}

// eachKey calls fn with up to max keys of b that start with prefix, in
// order, collected before the first call, and returns how many it
// passed.
func eachKey(b *bolt.Bucket, prefix []byte, max int, fn func([]byte) error) (int, error) {
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); len(keys) < max && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := fn(k); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// dropFiles deletes up to max file records whose keys start with prefix,
// uncounting their contents.
func dropFiles(a *applyCtx, prefix []byte, max int) (int, error) {
	return eachKey(a.bucket(storage.Files), prefix, max, func(k []byte) error {
		rec, err := getRecord[pb.StoredFile](a.tx, storage.Files, k)
		if err != nil {
			return err
		}
		return dropFile(a, k, rec)
	})
}

// TrimWork returns the IDs of up to max groups that a trim at nowMs with
// c's limits would remove records of: dissolved groups first, then, when
// c sets a limit, groups whose oldest message is past it. It reads every
// group of the shard when a limit is set, so nodes call it once per
// sweep and propose a TrimCmd only when it finds some.
func TrimWork(tx *bolt.Tx, nowMs int64, c *pb.TrimCmd, max int) ([]uint64, error) {
	var out []uint64
	pc := tx.Bucket(storage.Purge).Cursor()
	for k, _ := pc.First(); k != nil && len(out) < max; k, _ = pc.Next() {
		out = append(out, storage.ReadU64(k, 0))
	}
	if c.MaxAgeMs == 0 && c.MaxMessages == 0 {
		return out, nil
	}
	gc := tx.Bucket(storage.Groups).Cursor()
	for k, v := gc.First(); k != nil && len(out) < max; k, v = gc.Next() {
		g, err := decode[pb.Group](k, v)
		if err != nil {
			return nil, err
		}
		if g.TrimmedSeq >= g.LastSeq {
			continue
		}
		m, err := getMessage(tx, g.Id, g.TrimmedSeq+1)
		if err != nil {
			return nil, err
		}
		if m == nil || outgrown(m, g, c, nowMs) {
			out = append(out, g.Id)
		}
	}
	return out, nil
}
