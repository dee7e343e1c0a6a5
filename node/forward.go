package node

import (
	"errors"
	"time"

	pb "github.com/schat/schat/proto"
)

// forwarder returns the function a shard's proposer uses when this node
// does not lead the shard: it finds the leader and hands it the entry.
// It retries only while the entry has certainly not been applied (no
// leader known, leader unreachable, or the peer no longer leads); once a
// request may have reached a leader, its error is final, since a retry
// could apply the entry twice.
func (n *Node) forwarder(shard uint32) forwardFunc {
	return func(entry []byte) (*pb.ForwardResponse, error) {
		deadline := time.Now().Add(n.cfg.ApplyTimeout)
		for {
			resp, err := n.forwardOnce(shard, entry)
			if err == nil || !retryable(err) || time.Now().After(deadline) {
				return resp, err
			}
			select {
			case <-n.ctx.Done():
				return nil, errClosed
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

func (n *Node) forwardOnce(shard uint32, entry []byte) (*pb.ForwardResponse, error) {
	addr, id := n.shards[shard].raft.LeaderWithID()
	if string(id) == n.cfg.NodeID {
		return nil, errSelfLeader
	}
	if addr == "" {
		return nil, errNotLeader
	}
	resp, err := n.peers.call(string(addr), &pb.NodeRequest{Body: &pb.NodeRequest_Forward{
		Forward: &pb.ForwardRequest{Shard: shard, Entry: entry}}})
	if err != nil {
		return nil, err
	}
	if err := respErr(resp); err != nil {
		return nil, err
	}
	return resp.GetForward(), nil
}

// retryable reports whether a forward failed before any leader could have
// applied the entry.
func retryable(err error) bool {
	var pe *pb.Error
	return errors.Is(err, errNotLeader) || errors.Is(err, errPeerUnreachable) ||
		errors.As(err, &pe) && pe.Code == pb.Code_UNAVAILABLE
}
