package node

import (
	"context"
	"sort"

	bolt "go.etcd.io/bbolt"

	"github.com/schat/schat/fsm"
	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

func (s *service) createGroup(ss *session, f *pb.ClientFrame) transport.Reply {
	req := f.GetCreateGroup()
	l := s.n.cfg.Limits
	if err := firstErr(checkText("group name", req.Name, l.MaxName, true),
		checkText("description", req.Description, l.MaxDescription, false),
		checkText("request key", req.RequestKey, 64, false),
		l.checkJoinPassword(req.JoinPassword), s.limitHash(ss, req.JoinPassword)); err != nil {
		return now(s.fail(err))
	}
	uid, name := ss.identity()
	return s.later(func(ctx context.Context) *pb.Response {
		g, err := s.n.createGroup(ctx, ss, uid, name, req)
		return s.reply(err, func() *pb.Response { return groupResponse(g, nil) })
	})
}

// createGroup counts the group against its owner on the meta shard, then
// creates it on its own shard, releasing the count if that fails.
func (n *Node) createGroup(ctx context.Context, ss *session, uid uint64, name string,
	req *pb.CreateGroupRequest) (*pb.Group, error) {
	var pwHash []byte
	if req.JoinPassword != "" {
		var err error
		if pwHash, err = n.hasher.hash(ctx, req.JoinPassword); err != nil {
			return nil, err
		}
	}
	res, err := n.exec(ctx, ss, metaShard, &pb.Command{Op: &pb.Command_ReserveGroup{
		ReserveGroup: &pb.ReserveGroupCmd{OwnerId: uid, RequestKey: req.RequestKey,
			MaxOwned: uint32(n.cfg.Limits.MaxOwnedGroups)}}})
	if err != nil {
		return nil, err
	}
	gid := res.GroupID
	res, err = n.exec(ctx, ss, n.shardOf(gid), &pb.Command{Op: &pb.Command_CreateGroup{
		CreateGroup: &pb.CreateGroupCmd{GroupId: gid, OwnerId: uid, OwnerName: name,
			Name: req.Name, JoinPasswordHash: pwHash, Description: req.Description,
			Public: req.Public}}})
	if res != nil && res.Code != pb.Code_OK {
		n.exec(ctx, ss, metaShard, &pb.Command{Op: &pb.Command_ReleaseGroup{
			ReleaseGroup: &pb.ReleaseGroupCmd{OwnerId: uid, GroupId: gid}}})
	}
	if err != nil {
		return nil, err
	}
	return res.Group, nil
}

func (l Limits) checkJoinPassword(pw string) error {
	if pw == "" {
		return nil
	}
	return l.checkPassword("join password", pw)
}

func (s *service) applyGroup(ss *session, f *pb.ClientFrame) transport.Reply {
	req := f.GetApplyGroup()
	l := s.n.cfg.Limits
	if err := firstErr(checkGroupID(req.GroupId), s.limit(ss, true),
		checkText("message", req.Message, l.MaxDescription, false)); err != nil {
		return now(s.fail(err))
	}
	if len(req.JoinPassword) > l.MaxPassword {
		return now(s.fail(pb.Errf(pb.Code_WRONG_PASSWORD, "wrong join password")))
	}
	uid, name := ss.identity()
	return s.later(func(ctx context.Context) *pb.Response {
		g, err := s.n.group(ctx, ss, req.GroupId)
		if err != nil {
			return s.fail(err)
		}
		ok := len(g.JoinPasswordHash) == 0
		if !ok {
			if ok, err = s.n.hasher.check(ctx, req.JoinPassword, g.JoinPasswordHash); err != nil {
				return s.fail(err)
			}
		}
		res, err := s.n.exec(ctx, ss, s.n.shardOf(g.Id), &pb.Command{Op: &pb.Command_Apply{
			Apply: &pb.ApplyCmd{GroupId: g.Id, UserId: uid, DisplayName: name,
				Message: req.Message, PasswordVersion: g.PasswordVersion, PasswordOk: ok}}})
		return s.reply(err, func() *pb.Response {
			return &pb.Response{Body: &pb.Response_ApplyGroup{ApplyGroup: &pb.ApplyGroupResponse{
				GroupId: res.Group.Id, GroupName: res.Group.Name}}}
		})
	})
}

func (s *service) decide(ss *session, f *pb.ClientFrame) transport.Reply {
	req := f.GetDecideApplication()
	if err := checkGroupID(req.GroupId); err != nil {
		return now(s.fail(err))
	}
	uid, _ := ss.identity()
	return s.later(func(ctx context.Context) *pb.Response {
		name := ""
		if u, err := s.n.user(ctx, ss, req.UserId); err == nil {
			name = u.DisplayName
		}
		res, err := s.n.exec(ctx, ss, s.n.shardOf(req.GroupId), &pb.Command{Op: &pb.Command_Decide{
			Decide: &pb.DecideCmd{GroupId: req.GroupId, OwnerId: uid, UserId: req.UserId,
				Approve: req.Approve, UserName: name, Limits: s.n.groupLimits()}}})
		return s.reply(err, func() *pb.Response { return groupResponse(res.Group, nil) })
	})
}

func (n *Node) groupLimits() *pb.GroupLimits {
	return &pb.GroupLimits{MaxMembers: uint32(n.cfg.Limits.MaxMembers),
		RecallWindowMs: n.cfg.Limits.RecallWindow.Milliseconds()}
}

func (s *service) listApplications(ss *session, f *pb.ClientFrame) transport.Reply {
	req := f.GetListApplications()
	at := appCursor{group: req.AfterGroupId, user: req.AfterUserId}
	limit := s.n.cfg.Limits.page(req.Limit)
	uid, _ := ss.identity()
	return s.later(func(ctx context.Context) *pb.Response {
		groups, err := s.n.groupsOf(ctx, ss, uid)
		if err != nil {
			return s.fail(err)
		}
		if req.GroupId != 0 {
			groups = filterGroup(groups, req.GroupId)
			if len(groups) == 0 || groups[0].Role != pb.Role_ROLE_OWNER {
				return s.fail(pb.Errf(pb.Code_PERMISSION_DENIED,
					"only the owner sees applications"))
			}
		}
		apps, more, err := s.n.ownedApplications(ctx, ss, groups, at, limit)
		return s.reply(err, func() *pb.Response {
			return &pb.Response{Body: &pb.Response_Applications{
				Applications: &pb.ListApplicationsResponse{Applications: apps, More: more}}}
		})
	})
}

func (s *service) listNotices(ss *session, f *pb.ClientFrame) transport.Reply {
	req := f.GetListNotices()
	limit := s.n.cfg.Limits.page(req.Limit)
	uid, _ := ss.identity()
	return s.later(func(ctx context.Context) *pb.Response {
		ns, more, err := s.n.notices(ctx, ss, uid, req.AfterId, limit)
		return s.reply(err, func() *pb.Response {
			return &pb.Response{Body: &pb.Response_Notices{
				Notices: &pb.ListNoticesResponse{Notices: ns, More: more}}}
		})
	})
}

func filterGroup(groups []*pb.GroupSummary, gid uint64) []*pb.GroupSummary {
	for _, g := range groups {
		if g.GroupId == gid {
			return []*pb.GroupSummary{g}
		}
	}
	return nil
}

func (s *service) quitGroup(ss *session, f *pb.ClientFrame) transport.Reply {
	uid, _ := ss.identity()
	return s.leave(ss, f.GetQuitGroup().GetGroupId(), uid)
}

func (s *service) kickMember(ss *session, f *pb.ClientFrame) transport.Reply {
	req := f.GetKickMember()
	return s.leave(ss, req.GroupId, req.UserId)
}

// leave removes user from a group: a quit when it is the caller, a kick
// otherwise.
func (s *service) leave(ss *session, gid, user uint64) transport.Reply {
	if err := checkGroupID(gid); err != nil {
		return now(s.fail(err))
	}
	uid, name := ss.identity()
	return s.later(func(ctx context.Context) *pb.Response {
		if user != uid {
			name = ""
			if u, err := s.n.user(ctx, ss, user); err == nil {
				name = u.DisplayName
			}
		}
		res, err := s.n.exec(ctx, ss, s.n.shardOf(gid), &pb.Command{Op: &pb.Command_Leave{
			Leave: &pb.LeaveCmd{GroupId: gid, ActorId: uid, UserId: user, UserName: name}}})
		return s.reply(err, func() *pb.Response { return groupResponse(res.Group, nil) })
	})
}

func (s *service) dissolve(ss *session, f *pb.ClientFrame) transport.Reply {
	gid := f.GetDissolveGroup().GetGroupId()
	if err := checkGroupID(gid); err != nil {
		return now(s.fail(err))
	}
	uid, _ := ss.identity()
	return s.later(func(ctx context.Context) *pb.Response {
		res, err := s.n.exec(ctx, ss, s.n.shardOf(gid), &pb.Command{Op: &pb.Command_Dissolve{
			Dissolve: &pb.DissolveCmd{GroupId: gid, ActorId: uid}}})
		if err != nil {
			return s.fail(err)
		}
		s.n.nudgeTrim() // the group's history goes in batches, from now
		_, err = s.n.exec(ctx, ss, metaShard, &pb.Command{Op: &pb.Command_ReleaseGroup{
			ReleaseGroup: &pb.ReleaseGroupCmd{OwnerId: uid, GroupId: gid}}})
		return s.reply(err, func() *pb.Response { return groupResponse(res.Group, nil) })
	})
}

func (s *service) transfer(ss *session, f *pb.ClientFrame) transport.Reply {
	req := f.GetTransferOwnership()
	if err := checkGroupID(req.GroupId); err != nil {
		return now(s.fail(err))
	}
	uid, _ := ss.identity()
	return s.later(func(ctx context.Context) *pb.Response {
		g, err := s.n.transfer(ctx, ss, uid, req.GroupId, req.UserId)
		return s.reply(err, func() *pb.Response { return groupResponse(g, nil) })
	})
}

// transfer moves the owner count on the meta shard, then the ownership on
// the group's shard, moving the count back if the group refuses.
func (n *Node) transfer(ctx context.Context, ss *session, from, gid, to uint64) (*pb.Group, error) {
	g, err := n.group(ctx, ss, gid)
	if err != nil {
		return nil, err
	}
	if g.OwnerId != from {
		return nil, pb.Errf(pb.Code_PERMISSION_DENIED, "only the owner may transfer the group")
	}
	to_, err := n.user(ctx, ss, to)
	if err != nil {
		return nil, err
	}
	_, err = n.exec(ctx, ss, metaShard, &pb.Command{Op: &pb.Command_MoveOwnership{
		MoveOwnership: &pb.MoveOwnershipCmd{FromId: from, ToId: to, GroupId: gid,
			MaxOwned: uint32(n.cfg.Limits.MaxOwnedGroups)}}})
	if err != nil {
		return nil, err
	}
	res, err := n.exec(ctx, ss, n.shardOf(gid), &pb.Command{Op: &pb.Command_Transfer{
		Transfer: &pb.TransferCmd{GroupId: gid, ActorId: from, ToId: to,
			ToName: to_.DisplayName}}})
	if res != nil && res.Code != pb.Code_OK {
		n.exec(ctx, ss, metaShard, &pb.Command{Op: &pb.Command_MoveOwnership{
			MoveOwnership: &pb.MoveOwnershipCmd{FromId: to, ToId: from, GroupId: gid}}})
	}
	if err != nil {
		return nil, err
	}
	return res.Group, nil
}

func (s *service) groupInfo(ss *session, f *pb.ClientFrame) transport.Reply {
	gid := f.GetGroupInfo().GetGroupId()
	uid, _ := ss.identity()
	return s.later(func(ctx context.Context) *pb.Response {
		var g *pb.Group
		var members []*pb.Member
		err := s.n.view(ctx, ss, s.n.shardOf(gid), func(tx *bolt.Tx) (err error) {
			if g, err = fsm.GetGroup(tx, gid); err != nil || g == nil {
				return err
			}
			members, err = fsm.Members(tx, gid)
			return err
		})
		if err == nil && g == nil {
			err = pb.Errf(pb.Code_NOT_FOUND, "no group %d", gid)
		}
		if err != nil {
			return s.fail(err)
		}
		if !isMember(members, uid) {
			if !g.Public {
				return s.fail(pb.Errf(pb.Code_NOT_MEMBER, "group %d is not public", gid))
			}
			members = nil
		}
		return groupResponse(g, members)
	})
}

func isMember(members []*pb.Member, uid uint64) bool {
	for _, m := range members {
		if m.UserId == uid {
			return true
		}
	}
	return false
}

func (s *service) publicGroups(ss *session, f *pb.ClientFrame) transport.Reply {
	req := f.GetListPublicGroups()
	limit := s.n.cfg.Limits.page(req.GetLimit())
	return s.later(func(ctx context.Context) *pb.Response {
		page, err := s.n.publicGroups(ctx, ss, req.GetAfterGroupId(), limit)
		return s.reply(err, func() *pb.Response {
			return &pb.Response{Body: &pb.Response_PublicGroups{PublicGroups: page}}
		})
	})
}

// publicGroups merges the public listings of every group shard in group ID
// order.
func (n *Node) publicGroups(ctx context.Context, ss *session, after uint64,
	limit int) (*pb.ListPublicGroupsResponse, error) {
	var all []*pb.Group
	for _, sh := range n.groupShards() {
		err := n.view(ctx, ss, sh, func(tx *bolt.Tx) error {
			gs, _, err := fsm.PublicGroups(tx, after, limit+1)
			all = append(all, gs...)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Id < all[j].Id })
	out := &pb.ListPublicGroupsResponse{}
	for i, g := range all {
		if i == limit {
			out.NextAfter = all[i-1].Id
			break
		}
		out.Groups = append(out.Groups, fsm.GroupInfo(g, nil))
	}
	return out, nil
}

func (s *service) updateGroup(ss *session, f *pb.ClientFrame) transport.Reply {
	req := f.GetUpdateGroup()
	l := s.n.cfg.Limits
	if err := firstErr(checkGroupID(req.GroupId),
		checkText("group name", req.GetName(), l.MaxName, req.Name != nil),
		checkText("description", req.GetDescription(), l.MaxDescription, false),
		checkText("avatar_file_id", req.GetAvatarFileId(), maxFileID, false),
		l.checkJoinPassword(req.GetJoinPassword()),
		s.limitHash(ss, req.GetJoinPassword())); err != nil {
		return now(s.fail(err))
	}
	uid, _ := ss.identity()
	return s.later(func(ctx context.Context) *pb.Response {
		cmd := &pb.UpdateGroupCmd{GroupId: req.GroupId, ActorId: uid, Name: req.Name,
			Description: req.Description, Public: req.Public, AvatarFileId: req.AvatarFileId}
		if req.JoinPassword != nil {
			cmd.JoinPasswordHash = []byte{}
			if *req.JoinPassword != "" {
				h, err := s.n.hasher.hash(ctx, *req.JoinPassword)
				if err != nil {
					return s.fail(err)
				}
				cmd.JoinPasswordHash = h
			}
		}
		res, err := s.n.exec(ctx, ss, s.n.shardOf(req.GroupId), &pb.Command{
			Op: &pb.Command_UpdateGroup{UpdateGroup: cmd}})
		return s.reply(err, func() *pb.Response { return groupResponse(res.Group, nil) })
	})
}

func (s *service) myGroups(ss *session, _ *pb.ClientFrame) transport.Reply {
	uid, _ := ss.identity()
	return s.later(func(ctx context.Context) *pb.Response {
		groups, err := s.n.groupsOf(ctx, ss, uid)
		return s.reply(err, func() *pb.Response {
			return &pb.Response{Body: &pb.Response_MyGroups{MyGroups: &pb.ListMyGroupsResponse{
				Groups: groups}}}
		})
	})
}

func (s *service) ackNotices(ss *session, f *pb.ClientFrame) transport.Reply {
	ids := f.GetAckNotices().GetNoticeIds()
	if len(ids) > s.n.cfg.Limits.MaxPage {
		return now(s.fail(pb.Errf(pb.Code_TOO_LONG, "at most %d notices at once",
			s.n.cfg.Limits.MaxPage)))
	}
	uid, _ := ss.identity()
	byShard := make(map[uint32][]uint64)
	for _, id := range ids {
		sh := uint32(id & (1<<fsm.NoticeShardBits - 1))
		if sh >= 1 && int(sh) <= s.n.info.Shards {
			byShard[sh] = append(byShard[sh], id)
		}
	}
	return s.later(func(ctx context.Context) *pb.Response {
		for sh, ids := range byShard {
			_, err := s.n.exec(ctx, ss, sh, &pb.Command{Op: &pb.Command_AckNotices{
				AckNotices: &pb.AckNoticesCmd{UserId: uid, NoticeIds: ids}}})
			if err != nil {
				return s.fail(err)
			}
		}
		return &pb.Response{}
	})
}

// group reads a group; NOT_FOUND if there is none. A group missing here
// is looked for again after a read barrier, so that a group created
// through another node is found as soon as its creation was acknowledged.
func (n *Node) group(ctx context.Context, ss *session, gid uint64) (*pb.Group, error) {
	shard := n.shardOf(gid)
	var g *pb.Group
	read := func(tx *bolt.Tx) (err error) {
		g, err = fsm.GetGroup(tx, gid)
		return err
	}
	err := n.view(ctx, ss, shard, read)
	if err == nil && g == nil {
		if err = n.barrier(ctx, shard); err == nil {
			err = n.view(ctx, ss, shard, read)
		}
	}
	if err == nil && g == nil {
		err = pb.Errf(pb.Code_NOT_FOUND, "no group %d", gid)
	}
	return g, err
}

// groupsOf lists a user's groups on every shard, in group ID order.
func (n *Node) groupsOf(ctx context.Context, ss *session, uid uint64) ([]*pb.GroupSummary, error) {
	var out []*pb.GroupSummary
	for _, sh := range n.groupShards() {
		err := n.view(ctx, ss, sh, func(tx *bolt.Tx) error {
			gs, err := fsm.GroupsOfUser(tx, uid)
			out = append(out, gs...)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GroupId < out[j].GroupId })
	return out, nil
}

// appCursor is a position in the (group, applicant) order of
// applications: a page starts after it.
type appCursor struct{ group, user uint64 }

// ownedApplications returns a page of up to limit pending applications to
// the owned groups among groups (in group ID order), after at, and whether
// more follow.
func (n *Node) ownedApplications(ctx context.Context, ss *session, groups []*pb.GroupSummary,
	at appCursor, limit int) ([]*pb.Application, bool, error) {
	var out []*pb.Application
	for _, g := range groups {
		if g.Role != pb.Role_ROLE_OWNER || g.GroupId < at.group || len(out) > limit {
			continue
		}
		after := uint64(0)
		if g.GroupId == at.group {
			after = at.user
		}
		err := n.view(ctx, ss, n.shardOf(g.GroupId), func(tx *bolt.Tx) error {
			apps, err := fsm.Applications(tx, g.GroupId, after, limit+1-len(out))
			out = append(out, apps...)
			return err
		})
		if err != nil {
			return nil, false, err
		}
	}
	return cutPage(out, limit)
}

// notices returns a page of up to limit of a user's unacknowledged
// notices from every shard, in ID order after afterID, and whether more
// follow.
func (n *Node) notices(ctx context.Context, ss *session, uid, afterID uint64,
	limit int) ([]*pb.Notice, bool, error) {
	var out []*pb.Notice
	for _, sh := range n.groupShards() {
		err := n.view(ctx, ss, sh, func(tx *bolt.Tx) error {
			ns, err := fsm.Notices(tx, uid, afterID, limit+1)
			out = append(out, ns...)
			return err
		})
		if err != nil {
			return nil, false, err
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return cutPage(out, limit)
}

// cutPage keeps the first limit items of a page read one long, and says
// whether there were more.
func cutPage[T any](items []T, limit int) ([]T, bool, error) {
	if len(items) > limit {
		return items[:limit], true, nil
	}
	return items, false, nil
}

// groupResponse answers with a group's client-facing description.
func groupResponse(g *pb.Group, members []*pb.Member) *pb.Response {
	return &pb.Response{Body: &pb.Response_Group{Group: fsm.GroupInfo(g, members)}}
}
