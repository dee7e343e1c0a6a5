package node

import (
	"bufio"
	"errors"
	"net"
	"sync"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/schat/schat/fsm"
	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// peerServer answers other nodes' calls on the service channel.
type peerServer struct {
	n  *Node
	ln net.Listener

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func (n *Node) startPeerServer() error {
	ln, err := n.mux.Listen(transport.ChannelService, 0)
	if err != nil {
		return err
	}
	ps := &peerServer{n: n, ln: ln, conns: make(map[net.Conn]struct{})}
	n.peerSrv = ps
	ps.wg.Add(1)
	go ps.acceptLoop()
	return nil
}

func (ps *peerServer) acceptLoop() {
	defer ps.wg.Done()
	for {
		c, err := ps.ln.Accept()
		if err != nil {
			return
		}
		ps.mu.Lock()
		ps.conns[c] = struct{}{}
		ps.mu.Unlock()
		ps.wg.Add(1)
		go ps.serve(c)
	}
}

// close stops accepting, closes open connections and waits for handlers.
func (ps *peerServer) close() {
	ps.ln.Close()
	ps.mu.Lock()
	for c := range ps.conns {
		c.Close()
	}
	ps.mu.Unlock()
	ps.wg.Wait()
}

func (ps *peerServer) serve(c net.Conn) {
	defer ps.wg.Done()
	defer func() {
		ps.mu.Lock()
		delete(ps.conns, c)
		ps.mu.Unlock()
		c.Close()
	}()
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	for {
		payload, err := transport.ReadFrame(r, peerMaxFrame, nil)
		if err != nil {
			return
		}
		req := new(pb.NodeRequest)
		var resp *pb.NodeResponse
		if err := proto.Unmarshal(payload, req); err != nil {
			resp = &pb.NodeResponse{Code: pb.Code_BAD_REQUEST, Detail: "undecodable request"}
		} else {
			resp = ps.n.handlePeer(req)
		}
		b, err := proto.Marshal(resp)
		if err != nil || transport.WriteFrame(w, b) != nil || w.Flush() != nil {
			return
		}
	}
}

// handlePeer answers one node-to-node request.
func (n *Node) handlePeer(req *pb.NodeRequest) *pb.NodeResponse {
	var err error
	resp := &pb.NodeResponse{}
	switch b := req.Body.(type) {
	case *pb.NodeRequest_Hello:
		resp.Body = &pb.NodeResponse_Hello{Hello: n.hello()}
	case *pb.NodeRequest_Join:
		err = n.serveJoin(b.Join)
	case *pb.NodeRequest_Remove:
		err = n.serveRemove(b.Remove)
	case *pb.NodeRequest_ReadIndex:
		var idx uint64
		idx, err = n.localReadIndex(b.ReadIndex.Shard)
		resp.Body = &pb.NodeResponse_ReadIndex{ReadIndex: &pb.ReadIndexResponse{Index: idx}}
	case *pb.NodeRequest_Status:
		resp.Body = &pb.NodeResponse_Status{Status: n.replicaStatus()}
	case *pb.NodeRequest_Forward:
		var fr *pb.ForwardResponse
		fr, err = n.serveForward(b.Forward)
		resp.Body = &pb.NodeResponse_Forward{Forward: fr}
	default:
		err = pb.Errf(pb.Code_UNKNOWN_REQUEST, "unknown node request")
	}
	if err != nil {
		resp = &pb.NodeResponse{Code: codeOfAny(err), Detail: err.Error()}
	}
	return resp
}

// codeOfAny is the client code of a refusal or an internal error.
func codeOfAny(err error) pb.Code {
	var pe *pb.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return codeOf(err)
}

func (n *Node) hello() *pb.HelloResponse {
	h := &pb.HelloResponse{NodeId: n.cfg.NodeID, RaftAddr: n.RaftAddr(),
		Shards: uint32(n.cfg.Shards)}
	if n.hasState() {
		h.HasState, h.ClusterId, h.Shards = true, n.info.ClusterID, uint32(n.info.Shards)
	}
	return h
}

// peerShard returns shard id if this node hosts it.
func (n *Node) peerShard(id uint32) (*shard, error) {
	if !n.hasState() || int(id) >= len(n.shards) {
		return nil, pb.Errf(pb.Code_UNAVAILABLE, "shard %d is not open here", id)
	}
	return n.shards[id], nil
}

// serveForward commits the commands of an entry formed on another node,
// if this node leads the shard. They join this node's proposer queue, so
// that they share entries with the commands of this and other nodes; a
// command that is refused as never appended is never passed on: the
// proposer that forwarded it looks up the leader again and retries.
func (n *Node) serveForward(f *pb.ForwardRequest) (*pb.ForwardResponse, error) {
	sh, err := n.peerShard(f.Shard)
	if err != nil {
		return nil, err
	}
	cmds, batch, err := splitEntry(f.Entry)
	if err != nil {
		return nil, pb.Errf(pb.Code_INVALID_ARGUMENT, "%v", err)
	}
	prs := make([]*proposal, len(cmds))
	for i, c := range cmds {
		prs[i] = sh.prop.submitForwarded(c)
	}
	return forwardResults(prs, batch)
}

// forwardResults waits for the outcome of every forwarded command. If none
// was appended the whole entry is refused, for its origin to retry;
// otherwise each command gets its result or the code of its error, and
// the response the highest index among them, which covers them all.
func forwardResults(prs []*proposal, batch bool) (*pb.ForwardResponse, error) {
	out := &pb.ForwardResponse{Batch: batch, Results: make([]*pb.ApplyResult, len(prs))}
	refused := 0
	for i, pr := range prs {
		o := <-pr.out
		switch {
		case o.err == nil:
			out.Results[i] = encodeResult(o.res)
			out.Index = max(out.Index, o.index)
		default:
			if errors.Is(o.err, errNotLeader) || errors.Is(o.err, errClosed) {
				refused++
			}
			code := codeOf(o.err)
			out.Results[i] = &pb.ApplyResult{Code: code, Detail: code.String()}
		}
	}
	if refused == len(prs) {
		return nil, errNotLeader
	}
	return out, nil
}

func encodeResult(r *fsm.Result) *pb.ApplyResult {
	return &pb.ApplyResult{Code: r.Code, Detail: r.Detail, UserId: r.UserID, GroupId: r.GroupID,
		User: r.User, Group: r.Group, Message: r.Message, ReadSeq: r.ReadSeq, Unread: r.Unread,
		Existing: r.Existing, File: r.File, Count: r.Count}
}

func decodeResult(r *pb.ApplyResult) *fsm.Result {
	return &fsm.Result{Code: r.Code, Detail: r.Detail, UserID: r.UserId, GroupID: r.GroupId,
		User: r.User, Group: r.Group, Message: r.Message, ReadSeq: r.ReadSeq, Unread: r.Unread,
		Existing: r.Existing, File: r.File, Count: r.Count}
}

// serveJoin adds a voter to one shard, passing the request to the shard's
// leader when this node does not lead it.
func (n *Node) serveJoin(j *pb.JoinRequest) error {
	sh, err := n.peerShard(j.Shard)
	if err != nil {
		return err
	}
	if sh.raft.State() != raft.Leader {
		if j.Forwarded {
			return pb.Errf(pb.Code_UNAVAILABLE, "not the leader of shard %d", j.Shard)
		}
		j.Forwarded = true
		return n.toLeader(sh, &pb.NodeRequest{Body: &pb.NodeRequest_Join{Join: j}})
	}
	err = sh.raft.AddVoter(raft.ServerID(j.NodeId), raft.ServerAddress(j.RaftAddr), 0,
		n.cfg.ApplyTimeout).Error()
	if err != nil {
		return raftError(err)
	}
	n.log.Info("added voter", "shard", j.Shard, "node", j.NodeId, "addr", j.RaftAddr)
	return nil
}

// serveRemove removes a server from one shard, via its leader.
func (n *Node) serveRemove(rm *pb.RemoveRequest) error {
	sh, err := n.peerShard(rm.Shard)
	if err != nil {
		return err
	}
	if sh.raft.State() != raft.Leader {
		if rm.Forwarded {
			return pb.Errf(pb.Code_UNAVAILABLE, "not the leader of shard %d", rm.Shard)
		}
		rm.Forwarded = true
		return n.toLeader(sh, &pb.NodeRequest{Body: &pb.NodeRequest_Remove{Remove: rm}})
	}
	if err := sh.raft.RemoveServer(raft.ServerID(rm.NodeId), 0,
		n.cfg.ApplyTimeout).Error(); err != nil {
		return raftError(err)
	}
	n.log.Info("removed server", "shard", rm.Shard, "node", rm.NodeId)
	return nil
}

// toLeader passes a request to the current leader of sh.
func (n *Node) toLeader(sh *shard, req *pb.NodeRequest) error {
	addr, _ := sh.raft.LeaderWithID()
	if addr == "" {
		return pb.Errf(pb.Code_UNAVAILABLE, "shard %d has no leader", sh.id)
	}
	resp, err := n.peers.call(string(addr), req)
	if err != nil {
		return err
	}
	return respErr(resp)
}
