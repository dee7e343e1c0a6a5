package node

import (
	"net"
	"sync"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// session is the node's state for one client connection. The read loop
// (Serve) and the reply goroutine (Wait funcs) use it; the hub reads the
// token hash from FSM goroutines. mu guards every field below it.
type session struct {
	conn *transport.Conn
	ip   string // the peer's address, for rate limits

	mu    sync.Mutex
	user  uint64 // 0 until logged in
	name  string // display name, stamped into sent messages
	token []byte // hash of the session token
	// written holds, per shard, the raft index of the latest write
	// acknowledged to this connection or named by its resume; reads wait
	// for it. fresh holds the writes of the request being answered.
	written []uint64
	fresh   []*pb.ShardIndex
}

func newSession(c *transport.Conn, shards int) *session {
	ip := c.RemoteAddr().String()
	if h, _, err := net.SplitHostPort(ip); err == nil {
		ip = h
	}
	return &session{conn: c, ip: ip, written: make([]uint64, shards+1)}
}

// identity returns the logged-in user and display name (0 if none).
func (s *session) identity() (uint64, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.user, s.name
}

func (s *session) tokenHash() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token
}

func (s *session) setToken(h []byte) {
	s.mu.Lock()
	s.token = h
	s.mu.Unlock()
}

func (s *session) setName(name string) {
	s.mu.Lock()
	s.name = name
	s.mu.Unlock()
}

// login records the authenticated user; logout clears it.
func (s *session) login(uid uint64, name string, token []byte) {
	s.mu.Lock()
	s.user, s.name, s.token = uid, name, token
	s.mu.Unlock()
}

func (s *session) logout() (uid uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	uid = s.user
	s.user, s.name, s.token = 0, "", nil
	return uid
}

// wrote records the raft index of a write the session made to a shard,
// so reads on that shard can wait until the local state has it, and so
// the response names it.
func (s *session) wrote(shard uint32, index uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.written[shard] = max(s.written[shard], index)
	for _, w := range s.fresh {
		if w.Shard == shard {
			w.Index = max(w.Index, index)
			return
		}
	}
	s.fresh = append(s.fresh, &pb.ShardIndex{Shard: shard, Index: index})
}

// wroteElsewhere records the index of a write the client made through
// another node, which this one must hold before the session reads the
// shard. Shards this node does not have are ignored.
func (s *session) wroteElsewhere(shard uint32, index uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if int(shard) < len(s.written) {
		s.written[shard] = max(s.written[shard], index)
	}
}

// takeWrites returns the writes recorded since the last call. Requests
// are answered one at a time on the connection's reply goroutine, so they
// are the writes of the request just answered.
func (s *session) takeWrites() []*pb.ShardIndex {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.fresh
	s.fresh = nil
	return w
}

func (s *session) lastWrite(shard uint32) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.written[shard]
}
