package node

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/schat/schat/fsm"
	pb "github.com/schat/schat/proto"
)

// metaShard is the shard of accounts and sessions.
const metaShard = 0

// shardOf is the group shard that holds group gid: 1 + hash(gid) mod K.
func (n *Node) shardOf(gid uint64) uint32 {
	// splitmix64's finaliser spreads sequential IDs evenly.
	x := gid + 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	x ^= x >> 31
	return 1 + uint32(x%uint64(n.info.Shards))
}

// groupShards lists the group shard numbers.
func (n *Node) groupShards() []uint32 {
	out := make([]uint32, n.info.Shards)
	for i := range out {
		out[i] = uint32(i + 1)
	}
	return out
}

// stamp sets the command's time on the proposing node.
func stamp(cmd *pb.Command) *pb.Command {
	if cmd.TimeMs == 0 {
		cmd.TimeMs = time.Now().UnixMilli()
	}
	return cmd
}

// exec proposes cmd to a shard and waits for its result. A refusal comes
// back as a *pb.Error alongside the result.
func (n *Node) exec(ctx context.Context, ss *session, shard uint32,
	cmd *pb.Command) (*fsm.Result, error) {
	return n.finish(ctx, ss, shard, n.submit(shard, cmd))
}

// submit queues cmd for the shard's raft without waiting for it. Commands
// submitted one after another enter the log in that order.
func (n *Node) submit(shard uint32, cmd *pb.Command) *proposal {
	return n.shards[shard].prop.submit(stamp(cmd))
}

// finish waits for a submitted command. When ctx ends first the outcome
// is unknown: the command may still be applied.
func (n *Node) finish(ctx context.Context, ss *session, shard uint32,
	pr *proposal) (*fsm.Result, error) {
	var o outcome
	select {
	case o = <-pr.out:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", errUnknownOutcome, ctx.Err())
	}
	n.metrics.commit.Observe(time.Since(pr.start).Seconds())
	if o.err != nil {
		return nil, o.err
	}
	if ss != nil {
		ss.wrote(shard, o.index)
	}
	return o.res, o.res.Err()
}

// viewFresh is view, run again after a read barrier when missing reports
// that the first read did not find what it looked for: a record written
// through another node counts as soon as its write was acknowledged.
func (n *Node) viewFresh(ctx context.Context, ss *session, shard uint32,
	read func(*bolt.Tx) error, missing func() bool) error {
	err := n.view(ctx, ss, shard, read)
	if err == nil && missing() {
		if err = n.barrier(ctx, shard); err == nil {
			err = n.view(ctx, ss, shard, read)
		}
	}
	return err
}

// view reads a shard's state once it holds the session's own writes.
func (n *Node) view(ctx context.Context, ss *session, shard uint32, fn func(*bolt.Tx) error) error {
	sh := n.shards[shard]
	if ss != nil {
		if err := sh.fsm.WaitApplied(ctx, ss.lastWrite(shard)); err != nil {
			return err
		}
	}
	return sh.fsm.View(fn)
}

// awaitWritesElsewhere makes the session's reads wait for writes its
// client had acknowledged through other nodes, as its resume names them.
// An index beyond the shard's read index cannot be a write of this
// cluster's history (it came from before a restore or a recovery that
// lost it): waiting for it could last forever, so the read index is
// waited for instead. When the read index cannot be had the index is kept
// as it is, and reads wait for it or fail.
func (n *Node) awaitWritesElsewhere(ss *session, after []*pb.ShardIndex) {
	for _, w := range after {
		if int(w.Shard) >= len(n.shards) {
			continue
		}
		idx := w.Index
		if idx > n.shards[w.Shard].fsm.AppliedIndex() {
			if ri, err := n.readIndex(w.Shard); err == nil && ri < idx {
				n.log.Warn("resumed session names writes this cluster does not hold",
					"shard", w.Shard, "index", idx, "read_index", ri)
				idx = ri
			}
		}
		ss.wroteElsewhere(w.Shard, idx)
	}
}
