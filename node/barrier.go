package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	pb "github.com/schat/schat/proto"
)

// A linearizable read sees every write acknowledged anywhere before it
// began. The shard's leader finds the index such a read must wait for
// (its read index) without writing to the log:
//
//  1. Once per term, it commits a barrier entry. Until an entry of its
//     own term is committed, a new leader's commit index may lag behind
//     entries its predecessor committed.
//  2. It notes its commit index, then confirms with a quorum that it
//     still leads (VerifyLeader), in the same term. Every write
//     acknowledged before step 2 began is at or below the noted index.
//  3. The reading node waits until its state machine has applied that
//     index. On a follower the leader is asked for steps 1-2 over the node
//     port and the follower waits on its own state.

// barrier waits until this node's copy of a shard holds every write that
// was acknowledged anywhere before the call: a linearizable read point.
func (n *Node) barrier(ctx context.Context, shard uint32) error {
	idx, err := n.readIndex(shard)
	if err != nil {
		return err
	}
	return n.shards[shard].fsm.WaitApplied(ctx, idx)
}

// readIndex returns a shard's read index: computed here when this node
// leads the shard, asked of the leader otherwise.
func (n *Node) readIndex(shard uint32) (uint64, error) {
	sh := n.shards[shard]
	if sh.raft.State() == raft.Leader {
		return n.localReadIndex(shard)
	}
	addr, id := sh.raft.LeaderWithID()
	if addr == "" || string(id) == n.cfg.NodeID {
		return 0, errNotLeader
	}
	resp, err := n.peers.call(string(addr), &pb.NodeRequest{Body: &pb.NodeRequest_ReadIndex{
		ReadIndex: &pb.ReadIndexRequest{Shard: shard}}})
	if errors.Is(err, errUnknownOutcome) {
		// A read has no effect: an answer that never came is only a
		// read that could not be served.
		return 0, fmt.Errorf("%w: %w", errPeerUnreachable, err)
	}
	if err != nil {
		return 0, err
	}
	if err := respErr(resp); err != nil {
		return 0, err
	}
	return resp.GetReadIndex().GetIndex(), nil
}

// localReadIndex returns, on the shard's leader, the read index: an index
// of its state machine that holds every write acknowledged so far.
func (n *Node) localReadIndex(shard uint32) (uint64, error) {
	sh, err := n.peerShard(shard)
	if err != nil {
		return 0, err
	}
	if sh.raft.State() != raft.Leader {
		return 0, pb.Errf(pb.Code_UNAVAILABLE, "not the leader of shard %d", shard)
	}
	term, err := sh.termBarrier(n.cfg.ApplyTimeout)
	if err != nil {
		return 0, readError(err)
	}
	idx := sh.raft.CommitIndex()
	if err := sh.raft.VerifyLeader().Error(); err != nil {
		return 0, readError(err)
	}
	if sh.raft.CurrentTerm() != term {
		return 0, pb.Errf(pb.Code_UNAVAILABLE, "shard %d changed leaders during the read", shard)
	}
	return sh.stateIndex(idx), nil
}

// termBarrier returns the leader's current term once an entry of that
// term is committed, committing a barrier entry the first time it is
// asked in a term.
func (s *shard) termBarrier(timeout time.Duration) (uint64, error) {
	term := s.raft.CurrentTerm()
	if s.readyTerm.Load() == term {
		return term, nil
	}
	if err := s.raft.Barrier(timeout).Error(); err != nil {
		return 0, err
	}
	// The barrier may have been appended in a later term than the one
	// read above; recording the earlier one only costs another barrier.
	for {
		old := s.readyTerm.Load()
		if old >= term || s.readyTerm.CompareAndSwap(old, term) {
			return term, nil
		}
	}
}

// stateIndex returns the index the state machine has reached once it has
// applied every entry up to idx. raft hands the state machine commands
// and configurations only, not its no-op and barrier entries, so that is
// the index of the last of those at or below idx.
func (s *shard) stateIndex(idx uint64) uint64 {
	for i := idx; i > 0; i-- {
		applied := s.fsm.AppliedIndex()
		if applied >= i {
			return i
		}
		var l raft.Log
		if err := s.cache.GetLog(i, &l); err != nil {
			// Compacted into a snapshot: the state holds it, and the
			// entries after it up to idx are not for the state machine.
			return applied
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return i
		}
	}
	return 0
}

// readError says why a read point could not be found. A read changes
// nothing, so leadership lost while finding it only makes the read
// unavailable, never of unknown outcome.
func readError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %w", errNotLeader, err)
	}
	return err
}
