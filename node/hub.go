package node

import (
	"bytes"
	"sync"

	"github.com/schat/schat/fsm"
	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// hub knows which users are connected to this node and in which groups,
// and pushes committed events to them. Every node's state machines publish
// to their own hub, so no event is routed through another node.
//
// publish is called from the shards' FSM goroutines and must not block:
// connections have bounded queues and Send drops a client that cannot keep
// up (it resynchronises from its cursors).
type hub struct {
	mu sync.Mutex

	users  map[uint64]map[*session]struct{}
	groups map[uint64]map[uint64]struct{} // group -> online member IDs

	// sessions lists, in the order they first got one, the sessions with
	// events in the batch being published, each gathered in the session's
	// batch: a batch is handed to each connection in one push, so that its
	// writer finds the whole batch queued and sends it in one write.
	sessions []*session

	// push hands a session its events of a batch: its connection's
	// SendAll, which tests replace.
	push func(s *session, ms []*transport.Message) bool
}

func newHub() *hub {
	return &hub{users: make(map[uint64]map[*session]struct{}),
		groups: make(map[uint64]map[uint64]struct{}),
		push: func(s *session, ms []*transport.Message) bool {
			return s.conn.SendAll(ms)
		}}
}

// attach registers an authenticated session. groups is called under the
// hub's lock so that no membership event can slip between reading the
// user's groups and indexing them; it returns the user's group IDs.
func (h *hub) attach(s *session, uid uint64, groups func() ([]uint64, error)) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	gids, err := groups()
	if err != nil {
		return err
	}
	set := h.users[uid]
	if set == nil {
		set = make(map[*session]struct{})
		h.users[uid] = set
	}
	set[s] = struct{}{}
	for _, g := range gids {
		h.join(g, uid)
	}
	return nil
}

// detach forgets a session (logout or disconnect).
func (h *hub) detach(s *session, uid uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.users[uid]
	delete(set, s)
	if len(set) == 0 {
		delete(h.users, uid)
	}
	// Group entries of a user with no session left are pruned lazily by
	// deliver, which skips users who are not online.
}

// online reports how many sessions are attached.
func (h *hub) online() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, set := range h.users {
		n += len(set)
	}
	return n
}

func (h *hub) join(gid, uid uint64) {
	m := h.groups[gid]
	if m == nil {
		m = make(map[uint64]struct{})
		h.groups[gid] = m
	}
	m[uid] = struct{}{}
}

func (h *hub) leave(gid, uid uint64) {
	if m := h.groups[gid]; m != nil {
		delete(m, uid)
		if len(m) == 0 {
			delete(h.groups, gid)
		}
	}
}

// publish delivers a batch of committed events in order. attach reads the
// state under the same lock, so a session attached before the batch gets
// its events and one attached after reads a state that holds them.
func (h *hub) publish(events []fsm.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range events {
		h.handle(&events[i])
	}
	h.flush()
}

// queue adds m to the events of the batch for s; h.mu is held. Each
// session keeps the array its batches are gathered in, so a batch
// allocates nothing per recipient once the arrays have grown.
func (h *hub) queue(s *session, m *transport.Message) {
	if len(s.batch) == 0 {
		h.sessions = append(h.sessions, s)
	}
	s.batch = append(s.batch, m)
}

// flush hands every session its queued events in one push; h.mu is held.
// A push copies the events into the connection's queue, so the arrays are
// reused; one grown past hubBatchKeep is let go.
func (h *hub) flush() {
	for _, s := range h.sessions {
		h.push(s, s.batch)
		clear(s.batch)
		s.batch = s.batch[:0]
		if cap(s.batch) > hubBatchKeep {
			s.batch = nil
		}
	}
	clear(h.sessions)
	h.sessions = h.sessions[:0]
}

// hubBatchKeep is the largest batch array a session keeps between batches.
const hubBatchKeep = 16

func (h *hub) handle(e *fsm.Event) {
	if e.Revoke {
		h.revoke(e)
		return
	}
	if e.Event == nil {
		return
	}
	// A joining member is indexed first so that they see their own join;
	// a leaving one is dropped after, so that they see their own leave.
	mc := e.Event.GetMember()
	if mc != nil && mc.Change == pb.MemberChanged_JOINED && h.users[mc.UserId] != nil {
		h.join(mc.GroupId, mc.UserId)
	}
	h.deliver(e)
	switch {
	case mc != nil && mc.Change != pb.MemberChanged_JOINED:
		h.leave(mc.GroupId, mc.UserId)
	case e.Event.GetDissolved() != nil:
		delete(h.groups, e.Event.GetDissolved().GroupId)
	}
}

// deliver encodes the event once and queues it to every recipient session.
func (h *hub) deliver(e *fsm.Event) {
	var msg *transport.Message
	send := func(uid uint64) {
		for s := range h.users[uid] {
			if msg == nil {
				msg = transport.EventMessage(e.Event)
			}
			h.queue(s, msg)
		}
	}
	var members map[uint64]struct{}
	if e.GroupID != 0 {
		members = h.groups[e.GroupID]
		for uid := range members {
			if h.users[uid] == nil {
				delete(members, uid)
				continue
			}
			send(uid)
		}
	}
	for _, uid := range e.Users {
		if _, done := members[uid]; !done {
			send(uid)
		}
	}
}

// revoke ends the connections whose sessions a logout or password change
// invalidated.
func (h *hub) revoke(e *fsm.Event) {
	h.flush() // what came before the revocation is sent before it
	for _, uid := range e.Users {
		for s := range h.users[uid] {
			tok := s.tokenHash()
			end := e.RevokeToken != nil && bytes.Equal(tok, e.RevokeToken) ||
				e.RevokeToken == nil && !bytes.Equal(tok, e.KeepToken)
			if end {
				s.conn.SendAndClose(transport.EventMessage(&pb.Event{Body: &pb.Event_SessionEnded{
					SessionEnded: &pb.SessionEnded{Reason: "session revoked"}}}), "session revoked")
			}
		}
	}
}
