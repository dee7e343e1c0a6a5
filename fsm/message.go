package fsm

import (
	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/storage"
)

// appendMessage gives m the next seq of g, stores it and tells the group.
// The caller stores g, whose LastSeq it advances.
func appendMessage(a *applyCtx, g *pb.Group, m *pb.ChatMessage) error {
	m.GroupId = g.Id
	m.Seq = g.LastSeq + 1
	if err := storage.Put(a.bucket(storage.Messages), storage.U64s(g.Id, m.Seq), m); err != nil {
		return err
	}
	g.LastSeq = m.Seq
	a.emit(Event{GroupID: g.Id, Event: &pb.Event{Body: &pb.Event_Message{Message: m}}})
	return nil
}

// note appends a system message about user uid (or a name) to g. The
// caller stores g.
func note(a *applyCtx, g *pb.Group, kind pb.SystemNote_Kind, uid uint64,
	name string) error {
	return appendMessage(a, g, &pb.ChatMessage{
		TimeMs: a.now,
		Type:   pb.MessageType_MESSAGE_TYPE_SYSTEM,
		System: &pb.SystemNote{Kind: kind, UserId: uid, Name: name},
	})
}

// notify keeps ev for user uid until acknowledged and pushes it to them.
// The notice ID carries the shard number in its low bits.
func (f *FSM) notify(a *applyCtx, uid uint64, ev *pb.Event) (uint64, error) {
	n, err := storage.NextID(a.tx, storage.CounterNotice, firstNoticeID)
	if err != nil {
		return 0, err
	}
	id := n<<NoticeShardBits | uint64(f.cfg.Shard)
	ev.NoticeId = id
	notice := &pb.Notice{Id: id, TimeMs: a.now, Event: ev}
	if err := storage.Put(a.bucket(storage.Notices), storage.U64s(uid, id), notice); err != nil {
		return 0, err
	}
	a.emit(Event{Users: []uint64{uid}, Event: ev})
	return id, nil
}

// send appends a member's message. A repeat of a client message ID from
// the same sender returns the message stored the first time.
func (f *FSM) send(a *applyCtx, c *pb.SendCmd) (*Result, error) {
	g, m, err := checkSend(a, c)
	if err != nil {
		return nil, err
	}
	var dkey []byte
	if c.ClientMsgId != "" {
		dkey = idKey(g.Id, c.SenderId, []byte(c.ClientMsgId))
		if err := checkKey("client message ID", dkey); err != nil {
			return nil, err
		}
		prev, err := deduped(a, g.Id, dkey)
		if err != nil {
			return nil, err
		}
		if prev != nil {
			return &Result{GroupID: g.Id, Message: prev, Existing: true}, nil
		}
	}

	msg := &pb.ChatMessage{SenderId: c.SenderId, SenderName: c.SenderName, TimeMs: a.now,
		Type: c.Type, Text: c.Text, ClientMsgId: c.ClientMsgId}
	if c.Type != pb.MessageType_MESSAGE_TYPE_TEXT {
		if msg.File, err = claimFile(a, c.FileId,
			checkAttachment(g.Id, c.SenderId, c.Type)); err != nil {
			return nil, err
		}
	}
	if err := appendMessage(a, g, msg); err != nil {
		return nil, err
	}
	if dkey != nil {
		if err := a.bucket(storage.Dedup).Put(dkey, storage.U64(msg.Seq)); err != nil {
			return nil, err
		}
	}
	m.ReadSeq = msg.Seq
	if err := putMember(a, g.Id, m); err != nil {
		return nil, err
	}
	if err := putGroup(a, g); err != nil {
		return nil, err
	}
	return &Result{GroupID: g.Id, Message: msg, ReadSeq: m.ReadSeq}, nil
}

// checkSend returns the group and the sender's membership of a message
// that may be sent.
func checkSend(a *applyCtx, c *pb.SendCmd) (*pb.Group, *pb.Member, error) {
	g, err := loadGroup(a, c.GroupId)
	if err != nil {
		return nil, nil, err
	}
	m, err := loadMember(a, g.Id, c.SenderId)
	if err != nil {
		return nil, nil, err
	}
	// System messages are never a client's; file types need a file.
	switch {
	case c.Type == pb.MessageType_MESSAGE_TYPE_SYSTEM || pb.MessageType_name[int32(c.Type)] == "":
		return nil, nil, pb.Errf(pb.Code_INVALID_ARGUMENT, "message type %s not accepted", c.Type)
	case (c.Type == pb.MessageType_MESSAGE_TYPE_TEXT) != (c.FileId == ""):
		return nil, nil, pb.Errf(pb.Code_INVALID_ARGUMENT, "a %s message with file %q",
			c.Type, c.FileId)
	}
	return g, m, nil
}

// deduped returns the message an earlier send stored under dedup key
// dkey, or nil.
func deduped(a *applyCtx, gid uint64, dkey []byte) (*pb.ChatMessage, error) {
	v := a.bucket(storage.Dedup).Get(dkey)
	if len(v) != 8 {
		return nil, nil
	}
	return getMessage(a.tx, gid, storage.ReadU64(v, 0))
}

// recall blanks a message: its sender may within the recall window, the
// owner may at any time.
func (f *FSM) recall(a *applyCtx, c *pb.RecallCmd) (*Result, error) {
	g, err := loadGroup(a, c.GroupId)
	if err != nil {
		return nil, err
	}
	if _, err := loadMember(a, g.Id, c.ActorId); err != nil {
		return nil, err
	}
	msg, err := getMessage(a.tx, g.Id, c.Seq)
	if err != nil {
		return nil, err
	}
	if msg == nil {
		return nil, pb.Errf(pb.Code_NOT_FOUND, "message %d not found", c.Seq)
	}
	if err := checkRecall(a, g, msg, c); err != nil {
		return nil, err
	}

	if err := releaseFile(a, msg.GetFile().GetFileId()); err != nil {
		return nil, err
	}
	msg.Recalled, msg.RecalledBy, msg.Text, msg.File = true, c.ActorId, "", nil
	if err := storage.Put(a.bucket(storage.Messages),
		storage.U64s(g.Id, msg.Seq), msg); err != nil {
		return nil, err
	}
	a.emit(Event{GroupID: g.Id, Event: &pb.Event{Body: &pb.Event_Recalled{
		Recalled: &pb.MessageRecalled{GroupId: g.Id, Seq: msg.Seq, ByUserId: c.ActorId}}}})
	return &Result{GroupID: g.Id, Message: msg}, nil
}

// checkRecall applies the recall rules to a member's request.
func checkRecall(a *applyCtx, g *pb.Group, msg *pb.ChatMessage, c *pb.RecallCmd) error {
	window := c.GetLimits().GetRecallWindowMs()
	switch {
	case msg.Type == pb.MessageType_MESSAGE_TYPE_SYSTEM:
		return pb.Errf(pb.Code_PERMISSION_DENIED, "system messages cannot be recalled")
	case msg.Recalled:
		return pb.Errf(pb.Code_ALREADY_DONE, "message %d is recalled already", msg.Seq)
	case g.OwnerId == c.ActorId:
		// The owner may remove any message, their own included, at any time.
	case msg.SenderId != c.ActorId:
		return pb.Errf(pb.Code_PERMISSION_DENIED, "only the sender or the owner may recall")
	case window > 0 && a.now-msg.TimeMs > window:
		return pb.Errf(pb.Code_RECALL_EXPIRED, "message %d is too old to recall", msg.Seq)
	}
	return nil
}

// markRead moves a member's read cursor forward, never past the newest
// message and never back.
func (f *FSM) markRead(a *applyCtx, c *pb.MarkReadCmd) (*Result, error) {
	g, err := loadGroup(a, c.GroupId)
	if err != nil {
		return nil, err
	}
	m, err := loadMember(a, g.Id, c.UserId)
	if err != nil {
		return nil, err
	}
	seq := min(c.Seq, g.LastSeq)
	if seq > m.ReadSeq {
		m.ReadSeq = seq
		if err := putMember(a, g.Id, m); err != nil {
			return nil, err
		}
		a.emit(Event{GroupID: g.Id, Event: &pb.Event{Body: &pb.Event_Read{
			Read: &pb.ReadReceipt{GroupId: g.Id, UserId: m.UserId, ReadSeq: m.ReadSeq}}}})
	}
	return &Result{GroupID: g.Id, ReadSeq: m.ReadSeq, Unread: unread(g, m.ReadSeq)}, nil
}

// ackNotices deletes notices of the user; IDs of notices the user does not
// have are ignored.
func (f *FSM) ackNotices(a *applyCtx, c *pb.AckNoticesCmd) (*Result, error) {
	b := a.bucket(storage.Notices)
	for _, id := range c.NoticeIds {
		if err := b.Delete(storage.U64s(c.UserId, id)); err != nil {
			return nil, err
		}
	}
	return &Result{UserID: c.UserId}, nil
}
