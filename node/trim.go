package node

import (
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/schat/schat/fsm"
	pb "github.com/schat/schat/proto"
)

// trimGroupsAt bounds the groups one trim command names.
const trimGroupsAt = 64

// trimLoop has the group shards this node leads remove, every
// Retention.Interval and soon after a dissolve here, what they no longer
// keep. It runs on its own, since clearing a large backlog takes many
// commands, until Close.
func (n *Node) trimLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.Retention.Interval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		case <-n.trimNow:
		}
		n.trimShards()
	}
}

// nudgeTrim asks the trim loop for a pass soon, as after a dissolve.
func (n *Node) nudgeTrim() {
	select {
	case n.trimNow <- struct{}{}:
	default:
	}
}

// trimShards runs a trim pass on every group shard this node leads.
func (n *Node) trimShards() {
	for _, sh := range n.groupShards() {
		if err := n.trimShard(sh); err != nil && n.ctx.Err() == nil {
			n.log.Warn("trim", "shard", sh, "err", err)
		}
	}
}

// trimShard proposes trim commands to a shard while this node leads it
// and its state holds something to remove; each command removes at most
// Retention.Batch records, with the cut-off computed from its time.
func (n *Node) trimShard(shard uint32) error {
	sh := n.shards[shard]
	for n.ctx.Err() == nil && sh.raft.State() == raft.Leader {
		now := time.Now().UnixMilli()
		c := n.trimCmd()
		err := sh.fsm.View(func(tx *bolt.Tx) (err error) {
			c.GroupIds, err = fsm.TrimWork(tx, now, c, trimGroupsAt)
			return err
		})
		if err != nil || len(c.GroupIds) == 0 {
			return err
		}
		res, err := n.exec(n.ctx, nil, shard, &pb.Command{TimeMs: now,
			Op: &pb.Command_Trim{Trim: c}})
		if err != nil {
			return err
		}
		if res.Count == 0 {
			return nil // the state moved on since it was read
		}
	}
	return nil
}

// trimCmd is a trim command with the configured limits and no groups.
func (n *Node) trimCmd() *pb.TrimCmd {
	r := n.cfg.Retention
	return &pb.TrimCmd{MaxAgeMs: r.MaxAge.Milliseconds(), MaxMessages: uint64(r.MaxMessages),
		MaxRecords: uint32(r.Batch)}
}
