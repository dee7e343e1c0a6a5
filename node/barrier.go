package node

import (
	"context"

	"github.com/hashicorp/raft"

	pb "github.com/schat/schat/proto"
)

// localReadIndex returns, on the shard's leader, the index of the last
// command in its state once that state holds every write acknowledged so
// far. raft's Barrier commits an entry in the leader's term through a
// quorum and returns once everything before it is applied, which both
// confirms the leadership and flushes the state. It costs one log entry,
// so it is kept for reads that cannot be served from local state.
func (n *Node) localReadIndex(shard uint32) (uint64, error) {
	sh, err := n.peerShard(shard)
	if err != nil {
		return 0, err
	}
	if sh.raft.State() != raft.Leader {
		return 0, pb.Errf(pb.Code_UNAVAILABLE, "not the leader of shard %d", shard)
	}
	if err := sh.raft.Barrier(n.cfg.ApplyTimeout).Error(); err != nil {
		return 0, raftError(err)
	}
	return sh.fsm.AppliedIndex(), nil
}

// barrier waits until this node's copy of a shard holds every write that
// was acknowledged anywhere before the call: a linearizable read point.
func (n *Node) barrier(ctx context.Context, shard uint32) error {
	idx, err := n.localReadIndex(shard)
	if err != nil {
		addr, _ := n.shards[shard].raft.LeaderWithID()
		if addr == "" {
			return errNotLeader
		}
		resp, err := n.peers.call(string(addr), &pb.NodeRequest{Body: &pb.NodeRequest_ReadIndex{
			ReadIndex: &pb.ReadIndexRequest{Shard: shard}}})
		if err != nil {
			return err
		}
		if err := respErr(resp); err != nil {
			return err
		}
		idx = resp.GetReadIndex().GetIndex()
	}
	return n.shards[shard].fsm.WaitApplied(ctx, idx)
}
