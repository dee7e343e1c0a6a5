package node

import (
	"net"
	"sync"
	"time"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// session is the node's state for one client connection. The read loop
// (Serve) and the reply goroutine (Wait funcs) use it; the hub reads the
// token hash from FSM goroutines, and the expiry timer ends it from its
// own. mu guards every field below it.
type session struct {
	conn  *transport.Conn
	ip    string                 // the peer's address, for rate limits
	ended func(*session, uint64) // called when the login of a user expires

	// batch gathers the session's events of the batch the hub is
	// publishing; the hub's lock guards it.
	batch []*transport.Message

	mu      sync.Mutex
	user    uint64 // 0 until logged in
	name    string // display name, stamped into sent messages
	token   []byte // hash of the session token
	expires time.Time
	timer   *time.Timer // ends the connection at expires
	gen     uint64      // counts logins and logouts; a stale timer sees it moved
	// written holds, per shard, the raft index of the latest write
	// acknowledged to this connection or named by its resume; reads wait
	// for it. fresh holds the writes of the request being answered.
	written []uint64
	fresh   []*pb.ShardIndex
}

// newSession is the state of connection c; ended is called, on a timer's
// goroutine, when its login expires.
func newSession(c *transport.Conn, shards int, ended func(*session, uint64)) *session {
	ip := c.RemoteAddr().String()
	if h, _, err := net.SplitHostPort(ip); err == nil {
		ip = h
	}
	return &session{conn: c, ip: ip, ended: ended, written: make([]uint64, shards+1)}
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

// login records the authenticated user, whose session expires at
// expiresMs; logout clears it. The timer that ends it at its expiry is
// armed by renew, once the session receives events: armed before, it
// could fire between login and the hub's attach and leave a logged-out
// session attached.
func (s *session) login(uid uint64, name string, token []byte, expiresMs int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.user, s.name, s.token = uid, name, token
	s.expires = time.UnixMilli(expiresMs)
	s.gen++
	s.stopTimer()
}

func (s *session) logout() (uid uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	uid = s.user
	s.user, s.name, s.token = 0, "", nil
	s.gen++
	s.stopTimer()
	return uid
}

// renew arms the timer for the logged-in session's expiry, or moves it,
// as a password change that hands out a new token does.
func (s *session) renew(expiresMs int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.user != 0 {
		s.expireAt(expiresMs)
	}
}

// expireAt arms the timer that logs the connection out when the session
// expires; s.mu is held. Every node ends its own connections' sessions so,
// whether or not the meta shard has pruned them yet.
func (s *session) expireAt(expiresMs int64) {
	s.stopTimer()
	s.expires = time.UnixMilli(expiresMs)
	gen := s.gen
	s.timer = time.AfterFunc(time.Until(s.expires), func() { s.expire(gen) })
}

func (s *session) stopTimer() {
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
}

// expire logs out login gen, unless it was logged out or replaced
// meanwhile, and tells the client with a SessionEnded event. The
// connection stays open, so requests in flight are still answered, and
// the client may log in again on it. It runs on the timer's goroutine and
// does not block.
func (s *session) expire(gen uint64) {
	s.mu.Lock()
	uid := s.user
	if s.gen != gen || uid == 0 {
		s.mu.Unlock()
		return
	}
	s.user, s.name, s.token, s.timer = 0, "", nil, nil
	s.gen++
	s.mu.Unlock()
	s.ended(s, uid)
	s.conn.Send(transport.EventMessage(&pb.Event{Body: &pb.Event_SessionEnded{
		SessionEnded: &pb.SessionEnded{Reason: reasonExpired}}}))
}

// reasonExpired tells a client its session reached its expiry.
const reasonExpired = "session expired"

// expired reports whether a logged-in session is past its expiry: a
// request that finds it so is refused even if the timer has not fired.
func (s *session) expired(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.user != 0 && !now.Before(s.expires)
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
