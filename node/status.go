package node

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	pb "github.com/schat/schat/proto"
)

// Status is the cluster as /cluster/status reports it: the members as the
// answering node knows them, and each shard as every member that could be
// reached reports its replica.
type Status struct {
	NodeID    string        `json:"node_id"` // the node that answered
	ClusterID string        `json:"cluster_id"`
	RaftAddr  string        `json:"raft_addr"`
	Servers   []ServerInfo  `json:"servers"`
	Shards    []ShardStatus `json:"shards"`
}

// ServerInfo is a member of the cluster.
type ServerInfo struct {
	ID        string `json:"id"`
	Address   string `json:"address"`
	Suffrage  string `json:"suffrage"`
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"` // why it did not answer
}

// ShardStatus is one shard across the cluster. Term and CommitIndex are
// its leader's, or the highest any replica reported when none leads.
type ShardStatus struct {
	Shard       string        `json:"shard"`
	Leader      string        `json:"leader"`
	Term        uint64        `json:"term"`
	CommitIndex uint64        `json:"commit_index"`
	Replicas    []ReplicaInfo `json:"replicas"`
}

// ReplicaInfo is one node's replica of a shard. LastIndex is the last
// entry in its log: on a follower that agrees with the leader it is what
// the leader's match index for it converges to. Lag is how many entries
// the shard's commit index is ahead of what this replica has applied.
type ReplicaInfo struct {
	Node         string `json:"node"`
	State        string `json:"state"`
	Term         uint64 `json:"term"`
	LastIndex    uint64 `json:"last_index"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	Lag          uint64 `json:"lag"`
	// LastContactMs is how long ago it last heard from the leader: 0 on
	// the leader, -1 if never.
	LastContactMs int64 `json:"last_contact_ms"`
}

// statusTimeout bounds how long Status waits for a member's answer.
const statusTimeout = 3 * time.Second

// Status asks every member of the cluster, this node included, for its
// replicas and puts the answers together per shard. A member that does
// not answer within statusTimeout is reported unreachable.
func (n *Node) Status() Status {
	st := Status{NodeID: n.cfg.NodeID, ClusterID: n.info.ClusterID, RaftAddr: n.RaftAddr()}
	if !n.hasState() {
		return st
	}
	if f := n.shards[metaShard].raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			st.Servers = append(st.Servers, ServerInfo{ID: string(s.ID),
				Address: string(s.Address), Suffrage: s.Suffrage.String()})
		}
	}
	reports := n.gatherStatus(st.Servers)
	for id := range n.shards {
		st.Shards = append(st.Shards, shardStatus(uint32(id), st.Servers, reports))
	}
	return st
}

// gatherStatus asks each server for its replicas, at once, marking those
// that answered reachable. The result is indexed like servers; nil where
// a server did not answer.
func (n *Node) gatherStatus(servers []ServerInfo) []*pb.StatusResponse {
	out := make([]*pb.StatusResponse, len(servers))
	var wg sync.WaitGroup
	for i := range servers {
		if servers[i].ID == n.cfg.NodeID {
			out[i], servers[i].Reachable = n.replicaStatus(), true
			continue
		}
		wg.Add(1)
		go func(s *ServerInfo) {
			defer wg.Done()
			resp, err := n.peers.callWithin(s.Address, &pb.NodeRequest{
				Body: &pb.NodeRequest_Status{Status: &pb.StatusRequest{}}}, statusTimeout)
			if err == nil {
				err = respErr(resp)
			}
			if err == nil && resp.GetStatus().GetNodeId() != s.ID {
				err = fmt.Errorf("node %q answers at this address", resp.GetStatus().GetNodeId())
			}
			if err != nil {
				s.Error = err.Error()
				return
			}
			out[i], s.Reachable = resp.GetStatus(), true
		}(&servers[i])
	}
	wg.Wait()
	return out
}

// shardStatus puts together what the servers reported of one shard.
func shardStatus(id uint32, servers []ServerInfo, reports []*pb.StatusResponse) ShardStatus {
	ss := ShardStatus{Shard: shardLabel(id)}
	var found []*pb.ReplicaStatus
	for i, r := range reports {
		for _, rs := range r.GetShards() {
			if rs.Shard != id {
				continue
			}
			found = append(found, rs)
			ss.Replicas = append(ss.Replicas, ReplicaInfo{Node: servers[i].ID, State: rs.State,
				Term: rs.Term, LastIndex: rs.LastIndex, CommitIndex: rs.CommitIndex,
				AppliedIndex: rs.AppliedIndex, LastContactMs: rs.LastContactMs})
		}
	}
	for i, rs := range found {
		leads := rs.State == raft.Leader.String()
		if leads && rs.Term >= ss.Term {
			ss.Leader, ss.Term, ss.CommitIndex = ss.Replicas[i].Node, rs.Term, rs.CommitIndex
		}
	}
	if ss.Leader == "" {
		for _, rs := range found {
			ss.Term, ss.CommitIndex = max(ss.Term, rs.Term), max(ss.CommitIndex, rs.CommitIndex)
		}
	}
	for i := range ss.Replicas {
		if r := &ss.Replicas[i]; ss.CommitIndex > r.AppliedIndex {
			r.Lag = ss.CommitIndex - r.AppliedIndex
		}
	}
	return ss
}

// replicaStatus reports this node's replica of every shard.
func (n *Node) replicaStatus() *pb.StatusResponse {
	out := &pb.StatusResponse{NodeId: n.cfg.NodeID}
	if !n.hasState() {
		return out
	}
	for _, sh := range n.shards {
		r := sh.raft
		_, leader := r.LeaderWithID()
		out.Shards = append(out.Shards, &pb.ReplicaStatus{Shard: sh.id, State: r.State().String(),
			LeaderId: string(leader), Term: r.CurrentTerm(), LastIndex: r.LastIndex(),
			CommitIndex: r.CommitIndex(), AppliedIndex: r.AppliedIndex(),
			LastContactMs: lastContactMs(r)})
	}
	return out
}

func lastContactMs(r *raft.Raft) int64 {
	if r.State() == raft.Leader {
		return 0
	}
	t := r.LastContact()
	if t.IsZero() {
		return -1
	}
	return time.Since(t).Milliseconds()
}

// RemoveServer removes a node from every shard, through the shards'
// leaders.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	for _, sh := range n.shards {
		rm := &pb.RemoveRequest{NodeId: id, Shard: sh.id}
		if err := n.serveRemove(rm); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// adminOnly lets through requests that carry the cluster secret as a
// bearer token: the credential of the cluster's operator.
func (n *Node) adminOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(tok), n.secret) != 1 {
			http.Error(w, "cluster secret required", http.StatusUnauthorized)
			return
		}
		h(w, r)
	}
}

func (n *Node) serveStatus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(n.Status())
}

func (n *Node) serveRemoveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	id := r.URL.Query().Get("node")
	if id == "" {
		http.Error(w, "node is required", http.StatusBadRequest)
		return
	}
	if err := n.RemoveServer(r.Context(), id); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	n.log.Info("removed node", "node", id)
	w.WriteHeader(http.StatusNoContent)
}

// isVoter reports whether id is a voter of the meta shard.
func isVoter(sh *shard, id string) bool {
	f := sh.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id && s.Suffrage == raft.Voter {
			return true
		}
	}
	return false
}
