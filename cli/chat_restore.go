package main

import (
	"context"
	"fmt"
	"strings"
	"sync"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// history is what the chat client knows of the server's history: its
// incarnation at the last login, and per group the highest message seq
// printed as an event. A message event at or below a group's mark was
// printed already and is not printed again.
//
// When a login or resume names another incarnation, the deployment was
// restored from a backup and seqs may have been reused: the client says
// so, lowers each mark to the point up to which both histories agree
// and prints the messages after it.
type history struct {
	mu    sync.Mutex
	known bool // inc is set: a login happened
	inc   uint64
	marks map[uint64]uint64
}

// admit reports whether message m is to be printed, and moves its
// group's mark. Called from the connections' event pumps.
func (h *history) admit(m *pb.ChatMessage) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if m.Seq <= h.marks[m.GroupId] {
		return false
	}
	if h.marks == nil {
		h.marks = make(map[uint64]uint64)
	}
	h.marks[m.GroupId] = m.Seq
	return true
}

// groupRewind is one group's position after a change of history.
type groupRewind struct {
	g      *pb.GroupSummary
	shared uint64 // seqs up to it are the messages the client printed
	shown  bool   // the client had printed some of the group's messages
}

// login records the incarnation of lr. If it differs from the one of an
// earlier login, it returns each group's position in the new history
// and the marks are lowered to it; groups lr does not list are
// forgotten. It returns nil when the history did not change.
func (h *history) login(lr *pb.LoginResponse) (rewinds []groupRewind, fromKnown bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	prev, changed := h.inc, h.known && h.inc != lr.Incarnation
	h.known, h.inc = true, lr.Incarnation
	if !changed {
		return nil, false
	}
	old := h.marks
	h.marks = make(map[uint64]uint64)
	for _, g := range lr.Groups {
		mark, shown := old[g.GroupId]
		r := groupRewind{g: g, shown: shown,
			shared: transport.SharedMark(prev, lr, g, mark)}
		if shown {
			h.marks[g.GroupId] = r.shared
		}
		rewinds = append(rewinds, r)
	}
	return rewinds, lr.PreviousIncarnation == prev
}

// noticeHistory compares a login's incarnation with the last one. When the
// server's history was restored from a backup meanwhile, it prints a
// "restored" event and then, for each group whose messages it had shown,
// the messages sent after the point both histories share, one page of
// them at most.
func (s *chatSession) noticeHistory(ctx context.Context, lr *pb.LoginResponse) {
	rewinds, fromKnown := s.hist.login(lr)
	if rewinds == nil {
		return
	}
	rs := make(rows, len(rewinds))
	parts := make([]string, len(rewinds))
	for i, r := range rewinds {
		o := obj{{"grp_id", r.g.GroupId}, {"shared_seq", r.shared}, {"last_seq", r.g.LastSeq}}
		rs[i] = plainRow(o)
		parts[i] = fmt.Sprintf("[%d] same up to seq %d, now at %d", r.g.GroupId, r.shared,
			r.g.LastSeq)
	}
	how := "from a backup of the history this client knew"
	if !fromKnown {
		how = "from a backup of a history this client did not know; groups are shown " +
			"again from your read cursor"
	}
	s.out.event("restored", obj{{"incarnation", lr.Incarnation}, {"from_known", fromKnown},
		{"groups", rs}}, "the server's history was restored "+how+": "+strings.Join(parts, "; "))
	for _, r := range rewinds {
		if r.shown && r.shared < r.g.LastSeq {
			s.replay(ctx, r.g.GroupId, r.shared, lr.GetLimits().GetMaxPage())
		}
	}
}

// replay prints the messages of group gid after seq as message events.
func (s *chatSession) replay(ctx context.Context, gid, after uint64, limit uint32) {
	page, err := s.c.Sync(ctx, gid, after, limit, false)
	if err != nil {
		s.log.Warn("messages since the restore not fetched", "group", gid, "err", err)
		return
	}
	for _, m := range page.Messages {
		if s.hist.admit(m) {
			s.out.event("message", msgFields(m), msgLine(m))
		}
	}
	if n := len(page.Messages); page.More && n > 0 {
		last := page.Messages[n-1].Seq
		s.out.event("more", obj{{"grp_id", gid}, {"after_seq", last}},
			fmt.Sprintf("[%d] more messages since the restore: sync %d %d", gid, gid, last))
	}
}
