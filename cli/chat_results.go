package main

import (
	"context"
	"fmt"
	"time"

	pb "github.com/schat/schat/proto"
)

// The show functions of the command table: each turns an OK response into
// the fields of the command's result line.

func showReg(_ context.Context, _ *chatSession, _ *pb.ClientFrame, r *pb.Response) (obj, error) {
	reg := r.GetRegister()
	return obj{{"name", reg.GetLoginName()}, {"uid", reg.GetUserId()}}, nil
}

// showLogin records the session, prints what the server sent to start
// with and acknowledges the notices it printed.
func showLogin(ctx context.Context, s *chatSession, _ *pb.ClientFrame,
	r *pb.Response) (obj, error) {
	lr := r.GetLogin()
	s.loggedIn(lr)
	s.noticeHistory(ctx, lr)
	s.ackNotices(ctx, lr.Notices)
	return loginFields(lr), nil
}

// loginFields describes a login; more_applications and more_notices
// appear only when set, pointing to "apps next" and "notices".
func loginFields(lr *pb.LoginResponse) obj {
	u := lr.GetUser()
	o := obj{{"name", u.GetLoginName()}, {"display_name", u.GetDisplayName()},
		{"uid", u.GetUserId()}, {"sex", int32(u.GetSex())}, {"location", u.GetLocation()},
		{"groups", summaryRows(lr.Groups)}, {"applications", appRows(lr.Applications)},
		{"notices", noticeRows(lr.Notices)}}
	if lr.MoreApplications {
		o = append(o, kv{"more_applications", true})
	}
	if lr.MoreNotices {
		o = append(o, kv{"more_notices", true})
	}
	return o
}

func showLogout(_ context.Context, s *chatSession, _ *pb.ClientFrame,
	_ *pb.Response) (obj, error) {
	s.uid, s.token = 0, ""
	return nil, nil
}

func showPing(_ context.Context, _ *chatSession, f *pb.ClientFrame,
	r *pb.Response) (obj, error) {
	rtt := time.Now().UnixMilli() - f.GetPing().GetClientTimeMs()
	return obj{{"rtt_ms", rtt}, {"server_time", millis(r.GetPing().GetServerTimeMs())}}, nil
}

func showGroup(_ context.Context, _ *chatSession, _ *pb.ClientFrame,
	r *pb.Response) (obj, error) {
	return groupFields(r.GetGroup()), nil
}

func showApply(_ context.Context, _ *chatSession, _ *pb.ClientFrame,
	r *pb.Response) (obj, error) {
	a := r.GetApplyGroup()
	return obj{{"grp_name", a.GetGroupName()}, {"grp_id", a.GetGroupId()}}, nil
}

func showAudit(_ context.Context, _ *chatSession, f *pb.ClientFrame,
	r *pb.Response) (obj, error) {
	d := f.GetDecideApplication()
	return obj{{"grp_id", d.GroupId}, {"uid", d.UserId}, {"approve", d.Approve},
		{"mem_count", r.GetGroup().GetMemberCount()}}, nil
}

// showRequestIDs echoes the IDs of a request whose response has no body.
func showRequestIDs(_ context.Context, _ *chatSession, f *pb.ClientFrame,
	_ *pb.Response) (obj, error) {
	switch b := f.Body.(type) {
	case *pb.ClientFrame_QuitGroup:
		return obj{{"grp_id", b.QuitGroup.GroupId}}, nil
	case *pb.ClientFrame_KickMember:
		return obj{{"grp_id", b.KickMember.GroupId}, {"uid", b.KickMember.UserId}}, nil
	case *pb.ClientFrame_DissolveGroup:
		return obj{{"grp_id", b.DissolveGroup.GroupId}}, nil
	case *pb.ClientFrame_TransferOwnership:
		t := b.TransferOwnership
		return obj{{"grp_id", t.GroupId}, {"owner", t.UserId}}, nil
	}
	return nil, nil
}

func showSent(_ context.Context, _ *chatSession, _ *pb.ClientFrame,
	r *pb.Response) (obj, error) {
	m := r.GetMessage()
	o := obj{{"grp_id", m.GetGroupId()}, {"seq", m.GetSeq()}, {"time", millis(m.GetTimeMs())}}
	if f := m.GetFile(); f != nil {
		o = append(o, fileFields(f)...)
	}
	return o, nil
}

func pageFields(p *pb.MessagePage) obj {
	return obj{{"grp_id", p.GetGroupId()}, {"count", len(p.GetMessages())},
		{"last_seq", p.GetLastSeq()}, {"more", p.GetMore()}, {"messages", msgRows(p.GetMessages())}}
}

func showPage(_ context.Context, _ *chatSession, _ *pb.ClientFrame,
	r *pb.Response) (obj, error) {
	return pageFields(r.GetPage()), nil
}

// showSync prints the page, then moves the read cursor past it, as v1 did
// with every batch it pushed.
func showSync(ctx context.Context, s *chatSession, _ *pb.ClientFrame,
	r *pb.Response) (obj, error) {
	p := r.GetPage()
	o := pageFields(p)
	ms := p.GetMessages()
	if len(ms) == 0 {
		return o, nil
	}
	mr, err := s.c.MarkRead(ctx, p.GroupId, ms[len(ms)-1].Seq)
	if err != nil {
		return o, err
	}
	return append(o, kv{"read_seq", mr.ReadSeq}, kv{"unread", mr.Unread}), nil
}

func showProfiles(_ context.Context, _ *chatSession, _ *pb.ClientFrame,
	r *pb.Response) (obj, error) {
	ps := r.GetProfiles().GetProfiles()
	rs := make(rows, len(ps))
	for i, p := range ps {
		rs[i] = plainRow(profileFields(p))
	}
	return obj{{"count", len(ps)}, {"profiles", rs}}, nil
}

// showGround keeps where the listing goes on: after this page, or at the
// start once the last page is shown.
func showGround(_ context.Context, s *chatSession, _ *pb.ClientFrame,
	r *pb.Response) (obj, error) {
	pg := r.GetPublicGroups()
	s.groundAfter = pg.GetNextAfter()
	rs := make(rows, len(pg.GetGroups()))
	for i, g := range pg.GetGroups() {
		rs[i] = plainRow(groupFields(g))
	}
	return obj{{"count", len(rs)}, {"more", pg.GetNextAfter() != 0}, {"groups", rs}}, nil
}

func showRecall(_ context.Context, _ *chatSession, _ *pb.ClientFrame,
	r *pb.Response) (obj, error) {
	m := r.GetMessage()
	return obj{{"grp_id", m.GetGroupId()}, {"seq", m.GetSeq()}, {"recalled", m.GetRecalled()}}, nil
}

func showRead(_ context.Context, _ *chatSession, f *pb.ClientFrame,
	r *pb.Response) (obj, error) {
	mr := r.GetMarkRead()
	return obj{{"grp_id", f.GetMarkRead().GetGroupId()}, {"read_seq", mr.GetReadSeq()},
		{"unread", mr.GetUnread()}}, nil
}

func showGroups(_ context.Context, _ *chatSession, _ *pb.ClientFrame,
	r *pb.Response) (obj, error) {
	gs := r.GetMyGroups().GetGroups()
	return obj{{"count", len(gs)}, {"groups", summaryRows(gs)}}, nil
}

// showApps keeps where "apps next" goes on.
func showApps(_ context.Context, s *chatSession, f *pb.ClientFrame,
	r *pb.Response) (obj, error) {
	la := r.GetApplications()
	as := la.GetApplications()
	s.appsNext = nextApps(f.GetListApplications(), as, la.GetMore())
	return obj{{"count", len(as)}, {"more", la.GetMore()}, {"applications", appRows(as)}}, nil
}

// showNotices prints a page of notices and acknowledges them, so that the
// next call shows the ones after.
func showNotices(ctx context.Context, s *chatSession, _ *pb.ClientFrame,
	r *pb.Response) (obj, error) {
	ln := r.GetNotices()
	s.ackNotices(ctx, ln.GetNotices())
	return obj{{"count", len(ln.GetNotices())}, {"more", ln.GetMore()},
		{"notices", noticeRows(ln.GetNotices())}}, nil
}

// showPasswd keeps the fresh token: the old one is revoked.
func showPasswd(_ context.Context, s *chatSession, _ *pb.ClientFrame,
	r *pb.Response) (obj, error) {
	if t := r.GetChangePassword().GetToken(); t != "" {
		s.token = t
	}
	return nil, nil
}

func showProfile(_ context.Context, _ *chatSession, _ *pb.ClientFrame,
	r *pb.Response) (obj, error) {
	return profileFields(r.GetProfile()), nil
}

// helpFields lists every command, or the one named.
func helpFields(a argv) (obj, error) {
	cmds := chatCommands
	if a.n() == 1 {
		c := findCommand(a.at(0))
		if c == nil {
			return nil, usagef("unknown command %q", a.at(0))
		}
		cmds = []*command{c}
	}
	width := 0
	for _, c := range cmds {
		width = max(width, len(c.synopsis()))
	}
	rs := make(rows, len(cmds))
	for i, c := range cmds {
		rs[i] = row{fields: obj{{"name", c.name}, {"args", c.args}, {"help", c.help}},
			text: fmt.Sprintf("%-*s  %s", width, c.synopsis(), c.help)}
	}
	return obj{{"commands", rs}}, nil
}
