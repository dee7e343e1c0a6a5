package node

import (
	"time"

	"github.com/hashicorp/raft"

	pb "github.com/schat/schat/proto"
)

// pruneEvery is how often the meta shard's leader drops expired sessions.
const pruneEvery = time.Hour

// maintain runs the node's periodic housekeeping until Close.
func (n *Node) maintain() {
	defer n.wg.Done()
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			n.pruneSessions()
		}
	}
}

// pruneSessions removes expired sessions; only the meta leader proposes
// it, and the state machine decides from the command's time what expired.
func (n *Node) pruneSessions() {
	if n.shards[metaShard].raft.State() != raft.Leader {
		return
	}
	_, err := n.exec(n.ctx, nil, metaShard, &pb.Command{Op: &pb.Command_PruneSessions{
		PruneSessions: &pb.PruneSessionsCmd{}}})
	if err != nil {
		n.log.Warn("prune sessions", "err", err)
	}
}
