package node

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/hashicorp/raft"

	pb "github.com/schat/schat/proto"
)

// Status is one node's view of the cluster, as /cluster/status reports it.
type Status struct {
	NodeID    string        `json:"node_id"`
	ClusterID string        `json:"cluster_id"`
	RaftAddr  string        `json:"raft_addr"`
	Servers   []ServerInfo  `json:"servers"`
	Shards    []ShardStatus `json:"shards"`
}

// ServerInfo is a member of the cluster.
type ServerInfo struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage"`
}

// ShardStatus is this node's replica of one shard.
type ShardStatus struct {
	Shard        string `json:"shard"`
	State        string `json:"state"`
	Leader       string `json:"leader"`
	Term         string `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	Lag          uint64 `json:"lag"`
	LastContact  string `json:"last_contact"`
}

// Status reports this node's replicas and the membership of the meta
// shard (every shard has the same members).
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
	for _, sh := range n.shards {
		stats := sh.raft.Stats()
		_, leader := sh.raft.LeaderWithID()
		ss := ShardStatus{Shard: shardLabel(sh.id), State: sh.raft.State().String(),
			Leader: string(leader), Term: stats["term"], CommitIndex: sh.raft.CommitIndex(),
			AppliedIndex: sh.raft.AppliedIndex(), LastContact: stats["last_contact"]}
		if ss.CommitIndex > ss.AppliedIndex {
			ss.Lag = ss.CommitIndex - ss.AppliedIndex
		}
		st.Shards = append(st.Shards, ss)
	}
	return st
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
