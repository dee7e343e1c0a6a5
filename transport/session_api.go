package transport

import (
	"context"
	"errors"

	pb "github.com/schat/schat/proto"
)

// The request methods below wait for a connection while the Session
// reconnects, then behave as the Client methods of the same name on it.

// Login logs in on the current connection and keeps the token for
// reconnects. From then on every message of the response's groups after
// the group's LastSeq comes on Events once, across reconnects.
func (s *Session) Login(ctx context.Context, name, password string) (*pb.LoginResponse, error) {
	c, err := s.client(ctx)
	if err != nil {
		return nil, err
	}
	login, err := c.Login(ctx, name, password)
	if err != nil {
		return nil, err
	}
	s.remember(c, login.Token, login)
	return login, nil
}

// Resume logs the current connection in with an existing session token
// and keeps the token for reconnects, as Login does.
func (s *Session) Resume(ctx context.Context, token string) (*pb.LoginResponse, error) {
	c, err := s.client(ctx)
	if err != nil {
		return nil, err
	}
	login, err := c.Resume(ctx, token)
	if err != nil {
		return nil, err
	}
	s.remember(c, token, login)
	return login, nil
}

// remember keeps the token of a login made on c and raises each group's
// mark to the LastSeq the login reports: the live events of c start after
// it. If the Session already moved past c, its newer connection was made
// without this login and is dropped, so that the next one resumes it.
func (s *Session) remember(c *Client, token string, login *pb.LoginResponse) {
	s.mu.Lock()
	s.token = token
	if login.Incarnation != s.inc {
		// Another history: what was delivered says nothing about it.
		s.inc = login.Incarnation
		clear(s.marks)
	}
	for _, g := range login.Groups {
		if g.LastSeq > s.marks[g.GroupId] {
			s.marks[g.GroupId] = g.LastSeq
		}
	}
	stale := s.cur
	if stale == c {
		stale = nil
	}
	s.mu.Unlock()
	if stale != nil {
		stale.lost(errors.New("logged in on the previous connection"))
	}
}

// Do sends request f on the current connection; see Client.Do.
func (s *Session) Do(ctx context.Context, f *pb.ClientFrame) (*pb.Response, error) {
	c, err := s.client(ctx)
	if err != nil {
		return nil, err
	}
	return c.Do(ctx, f)
}

// Send posts a text message to group gid. A retry with the same
// clientMsgID, on this connection or the next, lands once.
func (s *Session) Send(ctx context.Context,
	gid uint64, text, clientMsgID string) (*pb.ChatMessage, error) {
	c, err := s.client(ctx)
	if err != nil {
		return nil, err
	}
	return c.Send(ctx, gid, text, clientMsgID)
}

// History pages backwards through group gid; see Client.History.
func (s *Session) History(ctx context.Context,
	gid, before uint64, limit uint32) (*pb.MessagePage, error) {
	c, err := s.client(ctx)
	if err != nil {
		return nil, err
	}
	return c.History(ctx, gid, before, limit)
}

// Sync pages forwards through group gid; see Client.Sync.
func (s *Session) Sync(ctx context.Context,
	gid, after uint64, limit uint32, fromCursor bool) (*pb.MessagePage, error) {
	c, err := s.client(ctx)
	if err != nil {
		return nil, err
	}
	return c.Sync(ctx, gid, after, limit, fromCursor)
}

// MyGroups lists the caller's groups with their unread counts.
func (s *Session) MyGroups(ctx context.Context) ([]*pb.GroupSummary, error) {
	c, err := s.client(ctx)
	if err != nil {
		return nil, err
	}
	return c.MyGroups(ctx)
}

// MarkRead moves the caller's read cursor in group gid forward to seq.
func (s *Session) MarkRead(ctx context.Context, gid, seq uint64) (*pb.MarkReadResponse, error) {
	c, err := s.client(ctx)
	if err != nil {
		return nil, err
	}
	return c.MarkRead(ctx, gid, seq)
}
