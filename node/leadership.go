package node

import (
	"sort"
	"time"

	"github.com/hashicorp/raft"
)

// balanceEvery is how often a node checks that it leads only its share of
// the shards.
const balanceEvery = 10 * time.Second

// balance runs until Close, handing each shard's leadership to the node
// that should hold it.
func (n *Node) balance() {
	defer n.wg.Done()
	t := time.NewTicker(balanceEvery)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			n.rebalance()
		}
	}
}

// rebalance transfers away the leadership of every shard this node leads
// but should not. Shard s is meant to be led by the s-th voter (by ID,
// round robin), so leadership, and with it the sequencing of each hash
// share of the groups, spreads evenly over the nodes; when that voter is
// down the transfer fails and this node simply keeps leading.
func (n *Node) rebalance() {
	for _, sh := range n.shards {
		if sh.raft.State() != raft.Leader {
			continue
		}
		target, ok := preferredLeader(sh)
		if !ok || target.ID == raft.ServerID(n.cfg.NodeID) {
			continue
		}
		err := sh.raft.LeadershipTransferToServer(target.ID, target.Address).Error()
		if err != nil {
			n.log.Debug("leadership transfer failed", "shard", sh.id, "to", target.ID, "err", err)
			continue
		}
		n.log.Info("handed leadership over", "shard", sh.id, "to", string(target.ID))
	}
}

// preferredLeader is the voter meant to lead sh.
func preferredLeader(sh *shard) (raft.Server, bool) {
	f := sh.raft.GetConfiguration()
	if f.Error() != nil {
		return raft.Server{}, false
	}
	var voters []raft.Server
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters = append(voters, s)
		}
	}
	if len(voters) < 2 {
		return raft.Server{}, false
	}
	sort.Slice(voters, func(i, j int) bool { return voters[i].ID < voters[j].ID })
	return voters[int(sh.id)%len(voters)], true
}

// handOver transfers away every leadership this node holds, before a clean
// shutdown, so that the cluster need not wait for an election timeout.
func (n *Node) handOver() {
	for _, sh := range n.shards {
		if sh.raft.State() != raft.Leader {
			continue
		}
		if f := sh.raft.GetConfiguration(); f.Error() != nil || len(f.Configuration().Servers) < 2 {
			continue
		}
		if err := sh.raft.LeadershipTransfer().Error(); err != nil {
			n.log.Warn("could not hand leadership over", "shard", sh.id, "err", err)
		}
	}
}
