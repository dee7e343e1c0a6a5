package node

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// service turns client frames into commands and reads. It implements
// transport.Handler: Serve runs on a connection's read loop, one frame at a
// time, and returns at once; work that waits for a commit runs in the
// reply's Wait func, which the connection calls in request order. Writes
// are proposed from Serve where they can be, so that one connection's
// pipelined writes enter the log in the order they were sent.
type service struct {
	n        *Node
	sessions sync.Map // *transport.Conn -> *session
	limiter  *rateLimiter
}

// handlerFunc answers one request on behalf of a logged-in (or, for the
// open requests, any) session.
type handlerFunc func(s *service, ss *session, f *pb.ClientFrame) transport.Reply

// openRequests may be sent before logging in.
var openRequests = map[string]bool{"register": true, "login": true, "resume": true,
	"ping": true}

func (s *service) Connect(c *transport.Conn) {
	s.sessions.Store(c, newSession(c, s.n.info.Shards, s.n.hub.detach))
	s.n.metrics.conns.Inc()
}

func (s *service) Disconnect(c *transport.Conn) {
	v, ok := s.sessions.LoadAndDelete(c)
	if !ok {
		return
	}
	s.endSession(v.(*session))
	s.n.metrics.conns.Dec()
}

func (s *service) Serve(c *transport.Conn, f *pb.ClientFrame) transport.Reply {
	v, ok := s.sessions.Load(c)
	if !ok {
		return now(s.fail(pb.Errf(pb.Code_UNAVAILABLE, "connection closing")))
	}
	ss := v.(*session)
	name, h := route(f)
	if h == nil {
		return now(s.fail(pb.Errf(pb.Code_UNKNOWN_REQUEST, "unknown request")))
	}
	s.n.metrics.requests.WithLabelValues(name).Inc()
	if ss.expired(time.Now()) {
		s.endSession(ss)
		if !openRequests[name] {
			return now(s.fail(pb.Errf(pb.Code_UNAUTHENTICATED, reasonExpired+"; log in again")))
		}
	}
	if uid, _ := ss.identity(); uid == 0 && !openRequests[name] {
		return now(s.fail(pb.Errf(pb.Code_UNAUTHENTICATED, "log in first")))
	}
	return namingWrites(ss, h(s, ss, f))
}

// namingWrites makes a reply's response name the raft indexes of the
// writes its request made. Writes are awaited only in Wait funcs, which
// the connection runs one at a time in request order.
func namingWrites(ss *session, r transport.Reply) transport.Reply {
	if r.Wait == nil {
		return r
	}
	wait := r.Wait
	r.Wait = func() *pb.Response {
		resp := wait()
		resp.Writes = ss.takeWrites()
		return resp
	}
	return r
}

// endSession logs the connection out and stops its events.
func (s *service) endSession(ss *session) {
	if uid := ss.logout(); uid != 0 {
		s.n.hub.detach(ss, uid)
	}
}

// route names a frame's request and picks its handler.
func route(f *pb.ClientFrame) (string, handlerFunc) {
	switch f.Body.(type) {
	case *pb.ClientFrame_Register:
		return "register", (*service).register
	case *pb.ClientFrame_Login:
		return "login", (*service).login
	case *pb.ClientFrame_Resume:
		return "resume", (*service).resume
	case *pb.ClientFrame_Logout:
		return "logout", (*service).logout
	case *pb.ClientFrame_Ping:
		return "ping", (*service).ping
	case *pb.ClientFrame_ChangePassword:
		return "change_password", (*service).changePassword
	case *pb.ClientFrame_UpdateProfile:
		return "update_profile", (*service).updateProfile
	case *pb.ClientFrame_GetProfiles:
		return "get_profiles", (*service).getProfiles
	}
	return routeGroup(f)
}

func routeGroup(f *pb.ClientFrame) (string, handlerFunc) {
	switch f.Body.(type) {
	case *pb.ClientFrame_CreateGroup:
		return "create_group", (*service).createGroup
	case *pb.ClientFrame_ApplyGroup:
		return "apply_group", (*service).applyGroup
	case *pb.ClientFrame_DecideApplication:
		return "decide_application", (*service).decide
	case *pb.ClientFrame_ListApplications:
		return "list_applications", (*service).listApplications
	case *pb.ClientFrame_QuitGroup:
		return "quit_group", (*service).quitGroup
	case *pb.ClientFrame_KickMember:
		return "kick_member", (*service).kickMember
	case *pb.ClientFrame_DissolveGroup:
		return "dissolve_group", (*service).dissolve
	case *pb.ClientFrame_TransferOwnership:
		return "transfer_ownership", (*service).transfer
	case *pb.ClientFrame_GroupInfo:
		return "group_info", (*service).groupInfo
	case *pb.ClientFrame_ListPublicGroups:
		return "list_public_groups", (*service).publicGroups
	case *pb.ClientFrame_UpdateGroup:
		return "update_group", (*service).updateGroup
	case *pb.ClientFrame_ListMyGroups:
		return "list_my_groups", (*service).myGroups
	case *pb.ClientFrame_AckNotices:
		return "ack_notices", (*service).ackNotices
	case *pb.ClientFrame_ListNotices:
		return "list_notices", (*service).listNotices
	}
	return routeMessage(f)
}

func routeMessage(f *pb.ClientFrame) (string, handlerFunc) {
	switch f.Body.(type) {
	case *pb.ClientFrame_SendMessage:
		return "send_message", (*service).send
	case *pb.ClientFrame_RecallMessage:
		return "recall_message", (*service).recall
	case *pb.ClientFrame_History:
		return "history", (*service).history
	case *pb.ClientFrame_Sync:
		return "sync", (*service).sync
	case *pb.ClientFrame_MarkRead:
		return "mark_read", (*service).markRead
	}
	return "", nil
}

// now is a reply that is ready at once.
func now(r *pb.Response) transport.Reply { return transport.Reply{Resp: r} }

// later runs fn on the connection's reply goroutine with a deadline.
func (s *service) later(fn func(ctx context.Context) *pb.Response) transport.Reply {
	return transport.Reply{Wait: func() *pb.Response {
		ctx, cancel := context.WithTimeout(s.n.ctx, s.n.cfg.ApplyTimeout)
		defer cancel()
		return fn(ctx)
	}}
}

// fail turns an error into a response with its client code. Errors that
// are not chat-level refusals are logged here, once; their text stays in
// the log, not in the response.
func (s *service) fail(err error) *pb.Response {
	var ce *pb.Error
	if errors.As(err, &ce) {
		return &pb.Response{Code: ce.Code, Detail: ce.Detail}
	}
	code := codeOf(err)
	if code == pb.Code_INTERNAL {
		s.n.log.Error("request failed", "err", err)
	} else {
		s.n.log.Warn("request not served", "code", code.String(), "err", err)
	}
	return &pb.Response{Code: code, Detail: code.String()}
}

// reply answers with body on success and with the error's code otherwise.
func (s *service) reply(err error, body func() *pb.Response) *pb.Response {
	if err != nil {
		return s.fail(err)
	}
	return body()
}

// codeOf maps internal errors to client codes; it is the one place that
// does. A write whose outcome is unknown is never UNAVAILABLE, which tells
// the client that nothing was done, whatever else its error wraps.
func codeOf(err error) pb.Code {
	switch {
	case errors.Is(err, errUnknownOutcome), errors.Is(err, raft.ErrEnqueueTimeout),
		errors.Is(err, context.DeadlineExceeded):
		return pb.Code_TIMEOUT
	case errors.Is(err, errNotLeader), errors.Is(err, errPeerUnreachable),
		errors.Is(err, raft.ErrRaftShutdown),
		errors.Is(err, errClosed), errors.Is(err, context.Canceled):
		return pb.Code_UNAVAILABLE
	}
	return pb.Code_INTERNAL
}

// errClosed means the node is shutting down.
var errClosed = errors.New("node: closed")

func (s *service) ping(_ *session, f *pb.ClientFrame) transport.Reply {
	return now(&pb.Response{Body: &pb.Response_Ping{Ping: &pb.PingResponse{
		ClientTimeMs: f.GetPing().GetClientTimeMs(),
		ServerTimeMs: time.Now().UnixMilli()}}})
}
