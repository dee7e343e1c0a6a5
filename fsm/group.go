package fsm

import (
	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/storage"
)

// loadGroup returns group gid, or NOT_FOUND.
func loadGroup(a *applyCtx, gid uint64) (*pb.Group, error) {
	g, err := GetGroup(a.tx, gid)
	if err == nil && g == nil {
		err = pb.Errf(pb.Code_NOT_FOUND, "group %d not found", gid)
	}
	return g, err
}

// loadMember returns the membership of uid in gid, or NOT_MEMBER.
func loadMember(a *applyCtx, gid, uid uint64) (*pb.Member, error) {
	m, err := GetMember(a.tx, gid, uid)
	if err == nil && m == nil {
		err = pb.Errf(pb.Code_NOT_MEMBER, "user %d is not a member of group %d", uid, gid)
	}
	return m, err
}

// requireOwner refuses an action of uid on g that only the owner may take.
func requireOwner(g *pb.Group, uid uint64) error {
	if g.OwnerId != uid {
		return pb.Errf(pb.Code_PERMISSION_DENIED, "only the owner of group %d may do this", g.Id)
	}
	return nil
}

func putGroup(a *applyCtx, g *pb.Group) error {
	return storage.Put(a.bucket(storage.Groups), storage.U64(g.Id), g)
}

// putMember stores m as a member of gid, indexed under the user as well.
func putMember(a *applyCtx, gid uint64, m *pb.Member) error {
	if err := storage.Put(a.bucket(storage.Members), storage.U64s(gid, m.UserId), m); err != nil {
		return err
	}
	return a.bucket(storage.UserGroups).Put(storage.U64s(m.UserId, gid), []byte{})
}

// removeMember deletes uid from gid under both keys.
func removeMember(a *applyCtx, gid, uid uint64) error {
	if err := a.bucket(storage.Members).Delete(storage.U64s(gid, uid)); err != nil {
		return err
	}
	return a.bucket(storage.UserGroups).Delete(storage.U64s(uid, gid))
}

// groupChanged emits g's new attributes to its members.
func groupChanged(a *applyCtx, g *pb.Group) {
	a.emit(Event{GroupID: g.Id, Event: &pb.Event{
		Body: &pb.Event_GroupChanged{GroupChanged: GroupInfo(g, nil)}}})
}

// memberChanged is the event of uid joining or leaving g.
func memberChanged(g *pb.Group, uid uint64, ch pb.MemberChanged_Change) *pb.Event {
	return &pb.Event{Body: &pb.Event_Member{Member: &pb.MemberChanged{
		GroupId:     g.Id,
		UserId:      uid,
		Change:      ch,
		MemberCount: uint64(g.MemberCount),
	}}}
}

// createGroup stores a group whose ID the meta shard reserved.
func (f *FSM) createGroup(a *applyCtx, c *pb.CreateGroupCmd) (*Result, error) {
	if c.GroupId == 0 || c.OwnerId == 0 {
		return nil, pb.Errf(pb.Code_INVALID_ARGUMENT, "group and owner IDs are required")
	}
	g, err := GetGroup(a.tx, c.GroupId)
	switch {
	case err != nil:
		return nil, err
	case g != nil && g.OwnerId == c.OwnerId:
		return &Result{GroupID: g.Id, Group: g, Existing: true}, nil
	case g != nil:
		return nil, pb.Errf(pb.Code_INTERNAL, "group %d exists with another owner", g.Id)
	case has(a.bucket(storage.Purge), storage.U64(c.GroupId)):
		// A late retry of a create whose group was dissolved since.
		return nil, pb.Errf(pb.Code_NOT_FOUND, "group %d was dissolved", c.GroupId)
	}

	g = &pb.Group{
		Id:               c.GroupId,
		Name:             c.Name,
		Description:      c.Description,
		OwnerId:          c.OwnerId,
		Public:           c.Public,
		JoinPasswordHash: c.JoinPasswordHash,
		PasswordVersion:  1,
		MemberCount:      1,
		CreatedMs:        a.now,
	}
	// The owner joins first, so that hubs index them for the group's events.
	a.emit(Event{GroupID: g.Id, Users: []uint64{c.OwnerId},
		Event: memberChanged(g, c.OwnerId, pb.MemberChanged_JOINED)})
	if err := note(a, g, pb.SystemNote_CREATED, c.OwnerId, c.OwnerName); err != nil {
		return nil, err
	}
	owner := &pb.Member{UserId: c.OwnerId, Role: pb.Role_ROLE_OWNER, JoinedMs: a.now,
		ReadSeq: g.LastSeq}
	if err := putMember(a, g.Id, owner); err != nil {
		return nil, err
	}
	if err := setPublic(a, g); err != nil {
		return nil, err
	}
	if err := putGroup(a, g); err != nil {
		return nil, err
	}
	return &Result{GroupID: g.Id, Group: g}, nil
}

// setPublic lists or unlists g according to g.Public.
func setPublic(a *applyCtx, g *pb.Group) error {
	if g.Public {
		return a.bucket(storage.Public).Put(storage.U64(g.Id), []byte{})
	}
	return a.bucket(storage.Public).Delete(storage.U64(g.Id))
}

// apply records an application to join a group and tells the owner.
func (f *FSM) apply(a *applyCtx, c *pb.ApplyCmd) (*Result, error) {
	g, err := loadGroup(a, c.GroupId)
	if err != nil {
		return nil, err
	}
	if m, err := GetMember(a.tx, g.Id, c.UserId); err != nil || m != nil {
		if err == nil {
			err = pb.Errf(pb.Code_ALREADY_MEMBER, "already a member of group %d", g.Id)
		}
		return nil, err
	}
	key := storage.U64s(g.Id, c.UserId)
	if has(a.bucket(storage.Apps), key) {
		return nil, pb.Errf(pb.Code_ALREADY_APPLIED, "already applied to group %d", g.Id)
	}
	if len(g.JoinPasswordHash) > 0 && (!c.PasswordOk || c.PasswordVersion != g.PasswordVersion) {
		return nil, pb.Errf(pb.Code_WRONG_PASSWORD, "wrong join password for group %d", g.Id)
	}

	app := &pb.Application{
		GroupId:     g.Id,
		GroupName:   g.Name,
		UserId:      c.UserId,
		DisplayName: c.DisplayName,
		Message:     c.Message,
		TimeMs:      a.now,
	}
	if err := storage.Put(a.bucket(storage.Apps), key, app); err != nil {
		return nil, err
	}
	a.emit(Event{Users: []uint64{g.OwnerId}, Event: &pb.Event{
		Body: &pb.Event_Application{Application: app}}})
	return &Result{GroupID: g.Id, Group: g}, nil
}

// decide is the owner's answer to an application.
func (f *FSM) decide(a *applyCtx, c *pb.DecideCmd) (*Result, error) {
	g, err := loadGroup(a, c.GroupId)
	if err != nil {
		return nil, err
	}
	if err := requireOwner(g, c.OwnerId); err != nil {
		return nil, err
	}
	key := storage.U64s(g.Id, c.UserId)
	if !has(a.bucket(storage.Apps), key) {
		return nil, pb.Errf(pb.Code_NOT_FOUND, "no application from user %d", c.UserId)
	}
	if c.Approve {
		if err := checkCanJoin(a, g, c.UserId, c.GetLimits().GetMaxMembers()); err != nil {
			return nil, err
		}
	}

	if err := a.bucket(storage.Apps).Delete(key); err != nil {
		return nil, err
	}
	if c.Approve {
		if err := join(a, g, c.UserId, c.UserName); err != nil {
			return nil, err
		}
	}
	_, err = f.notify(a, c.UserId, &pb.Event{Body: &pb.Event_Decided{
		Decided: &pb.ApplicationDecided{GroupId: g.Id, GroupName: g.Name, Approved: c.Approve}}})
	if err != nil {
		return nil, err
	}
	return &Result{GroupID: g.Id, Group: g}, nil
}

// checkCanJoin refuses to add uid to g when it is a member already or g
// is full; max 0 means no limit.
func checkCanJoin(a *applyCtx, g *pb.Group, uid uint64, max uint32) error {
	m, err := GetMember(a.tx, g.Id, uid)
	switch {
	case err != nil:
		return err
	case m != nil:
		return pb.Errf(pb.Code_ALREADY_MEMBER, "user %d is a member already", uid)
	case max > 0 && g.MemberCount >= max:
		return pb.Errf(pb.Code_LIMIT_EXCEEDED, "group %d has %d members", g.Id, g.MemberCount)
	}
	return nil
}

// join adds uid to g as a member that has read everything before its
// joining, and stores g.
func join(a *applyCtx, g *pb.Group, uid uint64, name string) error {
	m := &pb.Member{UserId: uid, Role: pb.Role_ROLE_MEMBER, JoinedMs: a.now, ReadSeq: g.LastSeq}
	if err := putMember(a, g.Id, m); err != nil {
		return err
	}
	g.MemberCount++
	// The membership event goes first, so that a node's hub has indexed
	// the new member by the time the system message reaches the group.
	a.emit(Event{GroupID: g.Id, Users: []uint64{uid},
		Event: memberChanged(g, uid, pb.MemberChanged_JOINED)})
	if err := note(a, g, pb.SystemNote_JOINED, uid, name); err != nil {
		return err
	}
	return putGroup(a, g)
}

// leave removes a member: by their own choice, or kicked by the owner.
func (f *FSM) leave(a *applyCtx, c *pb.LeaveCmd) (*Result, error) {
	g, err := loadGroup(a, c.GroupId)
	if err != nil {
		return nil, err
	}
	kick := c.ActorId != c.UserId
	if err := checkLeave(a, g, c, kick); err != nil {
		return nil, err
	}

	if err := removeMember(a, g.Id, c.UserId); err != nil {
		return nil, err
	}
	g.MemberCount--
	kind, change := pb.SystemNote_LEFT, pb.MemberChanged_LEFT
	if kick {
		kind, change = pb.SystemNote_KICKED, pb.MemberChanged_KICKED
	}
	if err := note(a, g, kind, c.UserId, c.UserName); err != nil {
		return nil, err
	}
	if err := putGroup(a, g); err != nil {
		return nil, err
	}
	if !kick {
		a.emit(Event{GroupID: g.Id, Users: []uint64{c.UserId},
			Event: memberChanged(g, c.UserId, change)})
		return &Result{GroupID: g.Id, Group: g}, nil
	}
	// The kicked user learns it from a notice, even if offline now.
	a.emit(Event{GroupID: g.Id, Event: memberChanged(g, c.UserId, change)})
	if _, err := f.notify(a, c.UserId, memberChanged(g, c.UserId, change)); err != nil {
		return nil, err
	}
	return &Result{GroupID: g.Id, Group: g}, nil
}

// checkLeave refuses a quit by the owner or a non-member, and a kick by
// anyone but the owner or of a non-member.
func checkLeave(a *applyCtx, g *pb.Group, c *pb.LeaveCmd, kick bool) error {
	if kick {
		if err := requireOwner(g, c.ActorId); err != nil {
			return err
		}
	}
	if _, err := loadMember(a, g.Id, c.UserId); err != nil {
		return err
	}
	if !kick && g.OwnerId == c.UserId {
		return pb.Errf(pb.Code_OWNER_MUST_TRANSFER,
			"the owner must transfer group %d before leaving it", g.Id)
	}
	return nil
}

// dissolve takes a group away from everyone at once and leaves a notice
// for each member but the owner and for each applicant, whose application
// is refused. Its messages and files stay behind, unreachable, for trim
// to remove in bounded batches.
func (f *FSM) dissolve(a *applyCtx, c *pb.DissolveCmd) (*Result, error) {
	g, err := loadGroup(a, c.GroupId)
	if err != nil {
		return nil, err
	}
	if err := requireOwner(g, c.ActorId); err != nil {
		return nil, err
	}

	members, applicants, err := removeGroup(a, g.Id)
	if err != nil {
		return nil, err
	}
	for _, uid := range members {
		if uid == c.ActorId {
			continue
		}
		ev := &pb.Event{Body: &pb.Event_Dissolved{Dissolved: &pb.GroupDissolved{
			GroupId: g.Id, Name: g.Name, ByUserId: c.ActorId}}}
		if _, err := f.notify(a, uid, ev); err != nil {
			return nil, err
		}
	}
	for _, uid := range applicants {
		ev := &pb.Event{Body: &pb.Event_Decided{Decided: &pb.ApplicationDecided{
			GroupId: g.Id, GroupName: g.Name, Reason: pb.ApplicationDecided_DISSOLVED}}}
		if _, err := f.notify(a, uid, ev); err != nil {
			return nil, err
		}
	}
	return &Result{GroupID: g.Id, Group: g}, nil
}

// removeGroup deletes group gid, its listing, members, applications and
// uploads in progress, and marks it for trim to remove the rest. It
// returns the IDs of the members and of the applicants it had. The work
// grows with the members and applications, not with the history.
func removeGroup(a *applyCtx, gid uint64) (members, applicants []uint64, err error) {
	prefix := storage.U64(gid)
	for _, k := range keysWithPrefix(a.bucket(storage.Members), prefix) {
		uid := storage.ReadU64(k, 8)
		members = append(members, uid)
		if err := removeMember(a, gid, uid); err != nil {
			return nil, nil, err
		}
	}
	for _, k := range keysWithPrefix(a.bucket(storage.Apps), prefix) {
		applicants = append(applicants, storage.ReadU64(k, 8))
		if err := a.bucket(storage.Apps).Delete(k); err != nil {
			return nil, nil, err
		}
	}
	for _, k := range keysWithPrefix(a.bucket(storage.Uploads), prefix) {
		if err := dropUpload(a, k); err != nil {
			return nil, nil, err
		}
	}
	for _, b := range [][]byte{storage.Groups, storage.Public, storage.Restored} {
		if err := a.bucket(b).Delete(prefix); err != nil {
			return nil, nil, err
		}
	}
	return members, applicants, a.bucket(storage.Purge).Put(prefix, []byte{})
}

// transfer hands a group to another member.
func (f *FSM) transfer(a *applyCtx, c *pb.TransferCmd) (*Result, error) {
	g, err := loadGroup(a, c.GroupId)
	if err != nil {
		return nil, err
	}
	if err := requireOwner(g, c.ActorId); err != nil {
		return nil, err
	}
	if c.ToId == c.ActorId {
		return nil, pb.Errf(pb.Code_INVALID_ARGUMENT, "already the owner of group %d", g.Id)
	}
	to, err := loadMember(a, g.Id, c.ToId)
	if err != nil {
		return nil, err
	}
	from, err := loadMember(a, g.Id, c.ActorId)
	if err != nil {
		return nil, err
	}

	from.Role, to.Role, g.OwnerId = pb.Role_ROLE_MEMBER, pb.Role_ROLE_OWNER, c.ToId
	for _, m := range []*pb.Member{from, to} {
		if err := putMember(a, g.Id, m); err != nil {
			return nil, err
		}
	}
	if err := note(a, g, pb.SystemNote_OWNER_CHANGED, c.ToId, c.ToName); err != nil {
		return nil, err
	}
	if err := putGroup(a, g); err != nil {
		return nil, err
	}
	groupChanged(a, g)
	return &Result{GroupID: g.Id, Group: g}, nil
}

// updateGroup changes the attributes present in the command.
func (f *FSM) updateGroup(a *applyCtx, c *pb.UpdateGroupCmd) (*Result, error) {
	g, err := loadGroup(a, c.GroupId)
	if err != nil {
		return nil, err
	}
	if err := requireOwner(g, c.ActorId); err != nil {
		return nil, err
	}
	if c.AvatarFileId != nil {
		err := setAvatar(a, &g.AvatarFileId, *c.AvatarFileId, checkAvatar(
			pb.FilePurpose_FILE_PURPOSE_GROUP_AVATAR, g.Id, c.ActorId))
		if err != nil {
			return nil, err
		}
	}

	renamed := c.Name != nil && *c.Name != g.Name
	if c.Name != nil {
		g.Name = *c.Name
	}
	if c.Description != nil {
		g.Description = *c.Description
	}
	if c.JoinPasswordHash != nil {
		g.JoinPasswordHash = c.JoinPasswordHash
		g.PasswordVersion++
	}
	if c.Public != nil {
		g.Public = *c.Public
		if err := setPublic(a, g); err != nil {
			return nil, err
		}
	}
	if renamed {
		if err := note(a, g, pb.SystemNote_RENAMED, c.ActorId, g.Name); err != nil {
			return nil, err
		}
	}
	if err := putGroup(a, g); err != nil {
		return nil, err
	}
	groupChanged(a, g)
	return &Result{GroupID: g.Id, Group: g}, nil
}
