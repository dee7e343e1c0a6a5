package node

import (
	"context"

	bolt "go.etcd.io/bbolt"

	"github.com/schat/schat/fsm"
	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// send proposes the message from the read loop, so that one connection's
// messages are sequenced in the order it sent them, and waits for the
// commit on the reply goroutine.
func (s *service) send(ss *session, f *pb.ClientFrame) transport.Reply {
	req := f.GetSendMessage()
	text := req.Type == pb.MessageType_MESSAGE_TYPE_TEXT
	if err := firstErr(checkGroupID(req.GroupId),
		checkText("message", req.Text, s.n.cfg.Limits.MaxMessage, text),
		checkText("client_msg_id", req.ClientMsgId, maxClientMsgID, false),
		checkText("file_id", req.FileId, maxFileID, false)); err != nil {
		return now(s.fail(err))
	}
	uid, name := ss.identity()
	shard := s.n.shardOf(req.GroupId)
	pr := s.n.submit(shard, &pb.Command{Op: &pb.Command_Send{Send: &pb.SendCmd{
		GroupId: req.GroupId, SenderId: uid, SenderName: name, Type: req.Type,
		Text: req.Text, ClientMsgId: req.ClientMsgId, FileId: req.FileId}}})
	return s.later(func(ctx context.Context) *pb.Response {
		res, err := s.n.finish(ctx, ss, shard, pr)
		return s.reply(err, func() *pb.Response {
			return &pb.Response{Body: &pb.Response_Message{Message: res.Message}}
		})
	})
}

func (s *service) recall(ss *session, f *pb.ClientFrame) transport.Reply {
	req := f.GetRecallMessage()
	if err := checkGroupID(req.GroupId); err != nil {
		return now(s.fail(err))
	}
	uid, _ := ss.identity()
	return s.later(func(ctx context.Context) *pb.Response {
		res, err := s.n.exec(ctx, ss, s.n.shardOf(req.GroupId), &pb.Command{Op: &pb.Command_Recall{
			Recall: &pb.RecallCmd{GroupId: req.GroupId, ActorId: uid, Seq: req.Seq,
				Limits: s.n.groupLimits()}}})
		return s.reply(err, func() *pb.Response {
			return &pb.Response{Body: &pb.Response_Message{Message: res.Message}}
		})
	})
}

func (s *service) history(ss *session, f *pb.ClientFrame) transport.Reply {
	req := f.GetHistory()
	limit := s.n.cfg.Limits.page(req.Limit)
	return s.readPage(ss, req.GroupId, req.Linearizable, func(tx *bolt.Tx,
		m *pb.Member) (*pb.MessagePage, error) {
		before := req.BeforeSeq
		if req.FromCursor && before == 0 {
			before = m.ReadSeq + 1 // 1 when nothing is read: an empty page
		}
		return fsm.History(tx, req.GroupId, before, limit)
	})
}

func (s *service) sync(ss *session, f *pb.ClientFrame) transport.Reply {
	req := f.GetSync()
	limit := s.n.cfg.Limits.page(req.Limit)
	return s.readPage(ss, req.GroupId, req.Linearizable, func(tx *bolt.Tx,
		m *pb.Member) (*pb.MessagePage, error) {
		after := req.AfterSeq
		if req.FromCursor && after < m.ReadSeq {
			after = m.ReadSeq
		}
		return fsm.Sync(tx, req.GroupId, after, limit)
	})
}

// readPage reads a page of a group's messages for one of its members,
// after a read barrier when the client asked for a linearizable read.
func (s *service) readPage(ss *session, gid uint64, linearizable bool,
	read func(*bolt.Tx, *pb.Member) (*pb.MessagePage, error)) transport.Reply {
	if err := checkGroupID(gid); err != nil {
		return now(s.fail(err))
	}
	uid, _ := ss.identity()
	return s.later(func(ctx context.Context) *pb.Response {
		if linearizable {
			if err := s.n.barrier(ctx, s.n.shardOf(gid)); err != nil {
				return s.fail(err)
			}
		}
		var page *pb.MessagePage
		err := s.n.view(ctx, ss, s.n.shardOf(gid), func(tx *bolt.Tx) error {
			m, err := fsm.GetMember(tx, gid, uid)
			if err != nil {
				return err
			}
			if m == nil {
				return pb.Errf(pb.Code_NOT_MEMBER, "not a member of group %d", gid)
			}
			page, err = read(tx, m)
			return err
		})
		return s.reply(err, func() *pb.Response {
			return &pb.Response{Body: &pb.Response_Page{Page: page}}
		})
	})
}

func (s *service) markRead(ss *session, f *pb.ClientFrame) transport.Reply {
	req := f.GetMarkRead()
	if err := checkGroupID(req.GroupId); err != nil {
		return now(s.fail(err))
	}
	uid, _ := ss.identity()
	return s.later(func(ctx context.Context) *pb.Response {
		res, err := s.n.exec(ctx, ss, s.n.shardOf(req.GroupId),
			&pb.Command{Op: &pb.Command_MarkRead{MarkRead: &pb.MarkReadCmd{
				GroupId: req.GroupId, UserId: uid, Seq: req.Seq}}})
		return s.reply(err, func() *pb.Response {
			return &pb.Response{Body: &pb.Response_MarkRead{MarkRead: &pb.MarkReadResponse{
				ReadSeq: res.ReadSeq, Unread: res.Unread}}}
		})
	})
}
