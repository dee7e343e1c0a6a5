package transport

import (
	"context"
	"errors"
	"fmt"
	"time"

	pb "github.com/schat/schat/proto"
)

// This file is the Session's goroutine: forwarding events, reconnecting
// and catching up. Everything here runs on that goroutine.

// run owns the connection from NewSession until the Session ends. at is
// the index in Addrs of c's address.
func (s *Session) run(c *Client, at int) {
	var err error
	for {
		s.forward(c)
		c.Close()
		if err = s.stopped(); err != nil {
			break
		}
		s.log.Warn("session connection lost", "addr", s.cfg.Addrs[at], "err", c.Err())
		if c, at, err = s.reconnect(at); err != nil {
			break
		}
	}
	s.finish(err)
}

// stopped says why the Session must not reconnect, or nil if it should.
func (s *Session) stopped() error {
	if s.ctx.Err() != nil {
		return context.Cause(s.ctx)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended != "" {
		return fmt.Errorf("%w: %s", ErrSessionEnded, s.ended)
	}
	return nil
}

// finish ends the Session with err.
func (s *Session) finish(err error) {
	if errors.Is(err, ErrClientClosed) {
		s.log.Debug("session closed")
	} else {
		s.log.Warn("session ended", "err", err)
	}
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
	s.cancel(err)
	close(s.done) // first, so that Err is set once Events is seen closed
	close(s.events)
	close(s.reconnects)
}

// forward passes c's events on until c ends or the Session does.
func (s *Session) forward(c *Client) {
	for {
		select {
		case e, ok := <-c.Events():
			if !ok {
				return
			}
			if s.admit(e) && !s.emit(e) {
				return
			}
		case <-s.ctx.Done():
			return
		}
	}
}

// emit delivers e on Events; it fails only when the Session ends first.
func (s *Session) emit(e *pb.Event) bool {
	select {
	case s.events <- e:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// admit says whether e is to be delivered and, if it is a message, moves
// its group's mark. A message at or below the mark was delivered already.
// One above the mark plus one means messages were missed on a live
// connection; that is logged, not repaired, since the server is expected
// never to skip one while a connection is up.
func (s *Session) admit(e *pb.Event) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if se := e.GetSessionEnded(); se != nil {
		s.ended = se.Reason
		if s.ended == "" {
			s.ended = "no reason given"
		}
		return true
	}
	m := e.GetMessage()
	if m == nil {
		return true
	}
	mark, ok := s.marks[m.GroupId]
	if ok && m.Seq <= mark {
		return false
	}
	if ok && m.Seq != mark+1 {
		s.log.Warn("session missed messages", "group", m.GroupId, "after", mark,
			"seq", m.Seq)
	}
	s.marks[m.GroupId] = m.Seq
	return true
}

// reconnect tries the addresses after at in turn, pausing ReconnectWait
// after each round in which all failed, until one takes the Session back.
// It gives up when the Session ends, or after a round in which some node
// rejected the token and every other one that answered did too; nodes
// that cannot be reached do not keep a rejected token alive.
func (s *Session) reconnect(at int) (*Client, int, error) {
	s.setUp(nil)
	n := len(s.cfg.Addrs)
	for {
		answered, rejected := 0, 0
		var last error
		for range n {
			at = (at + 1) % n
			c, reached, err := s.attempt(at)
			if err == nil {
				return c, at, nil
			}
			if s.ctx.Err() != nil {
				return nil, at, context.Cause(s.ctx)
			}
			if reached {
				answered++
			}
			if errors.Is(err, pb.ErrCode(pb.Code_UNAUTHENTICATED)) {
				rejected++
				last = err
			}
			s.log.Warn("session reconnect failed", "addr", s.cfg.Addrs[at], "err", err)
		}
		if rejected > 0 && rejected == answered {
			return nil, at, fmt.Errorf("%w: %w", ErrSessionEnded, last)
		}
		t := time.NewTimer(s.cfg.ReconnectWait)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return nil, at, context.Cause(s.ctx)
		}
	}
}

// attempt connects to Addrs[at], resumes the login and catches up; reached
// says whether the connection was made. The connection serves requests
// from the moment the login is resumed, so that requests do not wait for
// the catching up.
func (s *Session) attempt(at int) (c *Client, reached bool, err error) {
	addr := s.cfg.Addrs[at]
	if c, err = s.dial(addr); err != nil {
		return nil, false, err
	}
	login, err := s.resume(c)
	if err != nil {
		c.Close()
		return nil, true, err
	}
	rewound := s.rewind(login)
	caught, err := s.catchUp(c, login)
	if err != nil {
		s.setUp(nil)
		if s.ctx.Err() == nil {
			c.lost(fmt.Errorf("catching up: %w", err))
		}
		c.Close()
		return nil, true, err
	}

	s.mu.Lock()
	s.count++
	r := Reconnect{Addr: addr, Count: s.count, Login: login, CaughtUp: caught,
		Rewound: rewound}
	s.mu.Unlock()
	s.log.Info("session reconnected", "addr", addr, "count", r.Count, "caught_up", caught)
	s.notify(r)
	return c, true, nil
}

// resume logs c in with the saved token, if there is one, and makes c the
// connection requests use. The token and the switch are checked under one
// lock, so that a Login racing the reconnect either sees c (and replaces
// it) or is seen here (and the attempt is repeated with its token).
func (s *Session) resume(c *Client) (*pb.LoginResponse, error) {
	s.mu.Lock()
	token := s.token
	s.mu.Unlock()

	var login *pb.LoginResponse
	if token != "" {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RequestTimeout)
		defer cancel()
		var err error
		if login, err = c.Resume(ctx, token); err != nil {
			return nil, fmt.Errorf("transport: resume: %w", err)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != token {
		return nil, errors.New("transport: logged in again while reconnecting")
	}
	s.setUpLocked(c)
	return login, nil
}

// rewind compares the incarnation of a resumed login with the one the
// Session knew. When it changed, the server's history was restored from
// a backup: each mark comes down to SharedMark (messages up to it are the
// ones delivered before, those after it are new even if their seq was
// seen), and groups login does not list are forgotten.
func (s *Session) rewind(login *pb.LoginResponse) bool {
	if login == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if login.Incarnation == s.inc {
		return false
	}
	groups := make(map[uint64]*pb.GroupSummary, len(login.Groups))
	for _, g := range login.Groups {
		groups[g.GroupId] = g
	}
	for gid, mark := range s.marks {
		if g, ok := groups[gid]; ok {
			s.marks[gid] = SharedMark(s.inc, login, g, mark)
		} else {
			delete(s.marks, gid)
		}
	}
	known := login.PreviousIncarnation == s.inc
	s.inc = login.Incarnation
	s.log.Warn("server history was restored; resynchronising", "groups", len(groups),
		"from_known_history", known)
	return true
}

// SharedMark says how much of group g a client still holds after a login
// into another history than the one it knew. The client delivered g's
// messages up to mark in the history named by incarnation inc; login (with
// g among its groups) names another. When login's history was restored
// from a backup of inc's, both agree up to g.RestoredSeq, and the result
// is the lower of that and mark. Otherwise nothing the client delivered
// is known to be shared, and the result is g.ReadSeq: the user's read
// cursor in the new history. Messages after the result are to be fetched
// and shown as new, whatever their seqs were before.
func SharedMark(inc uint64, login *pb.LoginResponse, g *pb.GroupSummary, mark uint64) uint64 {
	switch {
	case login.Incarnation == inc:
		return mark
	case login.PreviousIncarnation == inc:
		return min(mark, g.RestoredSeq)
	}
	return g.ReadSeq
}

// catchUp delivers, for every group of login, the messages after the
// group's mark, and returns how many it delivered.
func (s *Session) catchUp(c *Client, login *pb.LoginResponse) (int, error) {
	total := 0
	for _, g := range login.GetGroups() {
		n, err := s.catchUpGroup(c, g, login.GetLimits().GetMaxPage())
		total += n
		if err != nil {
			return total, fmt.Errorf("transport: catch up group %d: %w", g.GroupId, err)
		}
	}
	return total, nil
}

func (s *Session) catchUpGroup(c *Client, g *pb.GroupSummary, limit uint32) (int, error) {
	after := s.markOf(g)
	n := 0
	for {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RequestTimeout)
		page, err := c.Sync(ctx, g.GroupId, after, limit, false)
		cancel()
		switch {
		case errors.Is(err, pb.ErrCode(pb.Code_NOT_MEMBER)),
			errors.Is(err, pb.ErrCode(pb.Code_NOT_FOUND)):
			return n, nil // left or dissolved since the resume
		case err != nil:
			return n, err
		}
		for _, m := range page.Messages {
			e := &pb.Event{Body: &pb.Event_Message{Message: m}}
			if !s.admit(e) {
				continue
			}
			if !s.emit(e) {
				return n, context.Cause(s.ctx)
			}
			n++
		}
		if !page.More || len(page.Messages) == 0 {
			return n, nil
		}
		after = page.Messages[len(page.Messages)-1].Seq
	}
}

// markOf returns g's mark, first setting it to g's ReadSeq if it has none.
func (s *Session) markOf(g *pb.GroupSummary) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	mark, ok := s.marks[g.GroupId]
	if !ok {
		mark = g.ReadSeq
		s.marks[g.GroupId] = mark
	}
	return mark
}

// notify puts r on Reconnects, replacing a value not yet received. Only
// the Session's goroutine sends, so the loop ends within two turns.
func (s *Session) notify(r Reconnect) {
	for {
		select {
		case s.reconnects <- r:
			return
		default:
		}
		select {
		case <-s.reconnects:
		default:
		}
	}
}
