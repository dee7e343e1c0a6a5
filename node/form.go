package node

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// loadSecret finds the cluster secret: the one stored in the data
// directory, the one configured, or, for the first start of a new
// cluster, a fresh one.
func (n *Node) loadSecret() error {
	_, exists, err := readDataDir(n.cfg.DataDir)
	if err != nil {
		return err
	}
	given := []byte(strings.TrimSpace(n.cfg.ClusterSecret))
	switch {
	case exists:
		if n.secret, err = readSecret(n.cfg.DataDir); err != nil {
			return err
		}
		if len(given) > 0 && !hmac.Equal(given, n.secret) {
			return fmt.Errorf("%w: the given secret differs from the one in %s",
				ErrSecret, n.cfg.DataDir)
		}
	case len(given) > 0:
		n.secret = given
	case len(n.cfg.Join) > 0:
		return fmt.Errorf("%w: joining a cluster needs its secret", ErrSecret)
	default:
		n.secret, err = newSecret()
		n.newSecret = true
	}
	return err
}

// NewSecret returns the cluster secret if this start generated it, so
// that it can be shown to the operator once; otherwise nil.
func (n *Node) NewSecret() []byte {
	if !n.newSecret {
		return nil
	}
	return n.secret
}

// form opens the shards: on a directory with data as they are, finishing a
// join or a bootstrap it recorded but did not complete; otherwise as a new
// one-node cluster, by joining the cluster that Join names, or by
// bootstrapping together with the other expected nodes.
func (n *Node) form() error {
	info, exists, err := readDataDir(n.cfg.DataDir)
	if err != nil {
		return err
	}
	if !exists {
		if len(n.cfg.Join) == 0 {
			return n.bootstrapAlone()
		}
		return n.joinOrBootstrap()
	}
	if err := checkShards(n.cfg.DataDir, info, n.cfg.explicitShards); err != nil {
		return err
	}
	n.info = info
	if err := n.openShards(n.bootstrapServers()); err != nil {
		return err
	}
	if len(info.JoinPending) > 0 {
		n.log.Info("finishing join", "pending", len(info.JoinPending))
		return n.joinShards()
	}
	return nil
}

// bootstrapServers is the configuration that shards without state start
// with: none on a node that joined (a leader gives it one), the recorded
// one on a node that bootstrapped, and this node alone on a directory
// made before configurations were recorded.
func (n *Node) bootstrapServers() []raft.Server {
	switch {
	case n.info.Joined:
		return nil
	case len(n.info.Bootstrap) == 0:
		return n.selfServer()
	}
	out := make([]raft.Server, len(n.info.Bootstrap))
	for i, s := range n.info.Bootstrap {
		out[i] = raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(s.ID),
			Address: raft.ServerAddress(s.Address)}
	}
	if len(out) == 1 && string(out[0].ID) == n.cfg.NodeID {
		// A cluster of this node alone: no other node knows it by the
		// recorded address, so it may have moved.
		return n.selfServer()
	}
	return out
}

func (n *Node) selfServer() []raft.Server {
	return []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(n.cfg.NodeID),
		Address: raft.ServerAddress(n.RaftAddr())}}
}

// recordServers converts a configuration for the directory's info.
func recordServers(servers []raft.Server) []dirServer {
	out := make([]dirServer, len(servers))
	for i, s := range servers {
		out[i] = dirServer{ID: string(s.ID), Address: string(s.Address)}
	}
	return out
}

func (n *Node) bootstrapAlone() error {
	id, err := newClusterID()
	if err != nil {
		return err
	}
	n.info = dirInfo{Shards: n.cfg.Shards, ClusterID: id, NodeID: n.cfg.NodeID,
		Bootstrap: recordServers(n.selfServer())}
	if err := createDataDir(n.cfg.DataDir, n.info, n.secret); err != nil {
		return err
	}
	n.log.Info("created data directory", "dir", n.cfg.DataDir, "shards", n.info.Shards)
	return n.openShards(n.bootstrapServers())
}

// failAt stops forming the cluster at a named point when the test hook
// asks for it, as a crash there would.
func (n *Node) failAt(point string) error {
	if n.cfg.failPoint == nil {
		return nil
	}
	return n.cfg.failPoint(point)
}

// formTimeout bounds how long a new node waits for its cluster.
const formTimeout = 5 * time.Minute

// joinOrBootstrap polls the Join addresses until a member of a cluster
// answers (then joins it) or, with BootstrapExpect, until enough empty
// nodes answer (then bootstraps with them).
func (n *Node) joinOrBootstrap() error {
	deadline := time.Now().Add(formTimeout)
	for {
		peers, err := n.helloAll()
		if err != nil {
			return err
		}
		if member := firstMember(peers); member != nil {
			return n.join(member)
		}
		if n.cfg.BootstrapExpect > 0 && len(peers)+1 >= n.cfg.BootstrapExpect {
			return n.bootstrapWith(peers)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node: no cluster member answered at %v within %v",
				n.cfg.Join, formTimeout)
		}
		n.log.Info("waiting for cluster", "join", strings.Join(n.cfg.Join, ","),
			"heard", len(peers))
		select {
		case <-n.ctx.Done():
			return errClosed
		case <-time.After(time.Second):
		}
	}
}

// helloAll asks every Join address who it is; other nodes only. A node
// that refuses this node's secret ends the wait at once: retrying cannot
// help.
func (n *Node) helloAll() ([]*pb.HelloResponse, error) {
	var out []*pb.HelloResponse
	for _, addr := range n.cfg.Join {
		resp, err := n.peers.call(addr, &pb.NodeRequest{Body: &pb.NodeRequest_Hello{
			Hello: &pb.HelloRequest{}}})
		if errors.Is(err, transport.ErrNotAuthorized) {
			return nil, fmt.Errorf("%w: refused by %s", ErrSecret, addr)
		}
		if err != nil || resp.GetHello() == nil {
			n.log.Debug("no hello", "addr", addr, "err", err)
			continue
		}
		if h := resp.GetHello(); h.NodeId != n.cfg.NodeID {
			out = append(out, h)
		}
	}
	return out, nil
}

func firstMember(peers []*pb.HelloResponse) *pb.HelloResponse {
	for _, p := range peers {
		if p.HasState {
			return p
		}
	}
	return nil
}

// join makes this node a voter of every shard of member's cluster. The
// directory records, before any shard is asked, that this node joined
// (so it never bootstraps) and which shards are still to be joined; each
// shard is struck off once its leader added this node.
func (n *Node) join(member *pb.HelloResponse) error {
	if n.cfg.explicitShards != 0 && n.cfg.explicitShards != int(member.Shards) {
		return fmt.Errorf("%w: the cluster has %d shards, not %d", ErrShardCount,
			member.Shards, n.cfg.explicitShards)
	}
	n.info = dirInfo{Shards: int(member.Shards), ClusterID: member.ClusterId,
		NodeID: n.cfg.NodeID, Joined: true,
		JoinVia: joinAddrs([]string{member.RaftAddr}, n.cfg.Join)}
	for id := uint32(0); id <= uint32(n.info.Shards); id++ {
		n.info.JoinPending = append(n.info.JoinPending, id)
	}
	if err := createDataDir(n.cfg.DataDir, n.info, n.secret); err != nil {
		return err
	}
	if err := n.openShards(nil); err != nil {
		return err
	}
	if err := n.joinShards(); err != nil {
		return err
	}
	n.log.Info("joined cluster", "cluster", n.info.ClusterID, "via", member.NodeId)
	return nil
}

// joinAddrs lists the addresses of lists in order, once each and without
// blanks.
func joinAddrs(lists ...[]string) []string {
	var out []string
	for _, list := range lists {
		for _, a := range list {
			if a != "" && !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

// joinTargets lists whom to ask to be added: the members recorded when
// the join began, the configured Join addresses, and the other members of
// any shard this node already has a configuration of.
func (n *Node) joinTargets() []string {
	var known []string
	for _, sh := range n.shards {
		f := sh.raft.GetConfiguration()
		if f.Error() != nil {
			continue
		}
		for _, s := range f.Configuration().Servers {
			if string(s.ID) != n.cfg.NodeID {
				known = append(known, string(s.Address))
			}
		}
	}
	return joinAddrs(n.info.JoinVia, n.cfg.Join, known)
}

// joinShards asks to be added to every shard the directory lists as
// pending, in order, recording each one done.
func (n *Node) joinShards() error {
	addrs := n.joinTargets()
	if len(addrs) == 0 {
		return fmt.Errorf("node: the join of %s is unfinished and no member is known; "+
			"give --join", n.cfg.DataDir)
	}
	for len(n.info.JoinPending) > 0 {
		id := n.info.JoinPending[0]
		if err := n.failAt(fmt.Sprintf("join shard %d", id)); err != nil {
			return err
		}
		if err := n.joinShard(addrs, id); err != nil {
			return err
		}
		n.info.JoinPending = n.info.JoinPending[1:]
		if len(n.info.JoinPending) == 0 {
			n.info.JoinPending, n.info.JoinVia = nil, nil
		}
		if err := writeDirInfo(n.cfg.DataDir, n.info); err != nil {
			return err
		}
	}
	return nil
}

// joinShard asks the cluster to add this node to a shard, through each of
// addrs in turn, retrying while the shard has no leader. Adding a voter
// that is already one changes nothing, so asking again after a crash is
// safe.
func (n *Node) joinShard(addrs []string, shard uint32) error {
	req := &pb.NodeRequest{Body: &pb.NodeRequest_Join{Join: &pb.JoinRequest{
		NodeId: n.cfg.NodeID, RaftAddr: n.RaftAddr(), Shard: shard}}}
	deadline := time.Now().Add(formTimeout)
	for i := 0; ; i++ {
		addr := addrs[i%len(addrs)]
		resp, err := n.peers.call(addr, req)
		if err == nil {
			err = respErr(resp)
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node: join shard %d via %s: %w", shard, addr, err)
		}
		n.log.Warn("join shard failed; retrying", "shard", shard, "via", addr, "err", err)
		select {
		case <-n.ctx.Done():
			return errClosed
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// bootstrapWith starts a new cluster of this node and peers. Each of them
// computes the same configuration and cluster ID from the same answers.
func (n *Node) bootstrapWith(peers []*pb.HelloResponse) error {
	servers := n.selfServer()
	ids := []string{n.cfg.NodeID}
	for _, p := range peers {
		if int(p.Shards) != n.cfg.Shards {
			return fmt.Errorf("%w: node %s has %d shards, this one %d", ErrShardCount,
				p.NodeId, p.Shards, n.cfg.Shards)
		}
		servers = append(servers, raft.Server{Suffrage: raft.Voter,
			ID: raft.ServerID(p.NodeId), Address: raft.ServerAddress(p.RaftAddr)})
		ids = append(ids, p.NodeId)
	}
	sort.Slice(servers, func(i, j int) bool { return servers[i].ID < servers[j].ID })
	sort.Strings(ids)
	mac := hmac.New(sha256.New, n.secret)
	mac.Write([]byte("cluster-id|" + strings.Join(ids, ",")))
	// The configuration is recorded with the directory, before any shard
	// is bootstrapped: a restart in between must bootstrap the same one.
	n.info = dirInfo{Shards: n.cfg.Shards, ClusterID: hex.EncodeToString(mac.Sum(nil)[:8]),
		NodeID: n.cfg.NodeID, Bootstrap: recordServers(servers)}
	if err := createDataDir(n.cfg.DataDir, n.info, n.secret); err != nil {
		return err
	}
	n.log.Info("bootstrapping cluster", "nodes", strings.Join(ids, ","))
	return n.openShards(n.bootstrapServers())
}
