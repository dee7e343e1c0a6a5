package node

import (
	"context"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/schat/schat/fsm"
	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

func (s *service) register(ss *session, f *pb.ClientFrame) transport.Reply {
	req := f.GetRegister()
	l := s.n.cfg.Limits
	if err := firstErr(s.limit(ss, false),
		checkLoginName(req.LoginName, l.MaxLoginName),
		l.checkPassword("password", req.Password),
		checkText("display name", req.DisplayName, l.MaxName, false),
		checkText("location", req.Location, l.MaxName, false),
		checkText("description", req.Description, l.MaxDescription, false)); err != nil {
		return now(s.fail(err))
	}
	return s.later(func(ctx context.Context) *pb.Response {
		hash, err := s.n.hasher.hash(ctx, req.Password)
		if err != nil {
			return s.fail(err)
		}
		res, err := s.n.exec(ctx, ss, metaShard, &pb.Command{Op: &pb.Command_Register{
			Register: &pb.RegisterCmd{LoginName: req.LoginName, PasswordHash: hash,
				DisplayName: req.DisplayName, Sex: req.Sex, Location: req.Location,
				Description: req.Description}}})
		return s.reply(err, func() *pb.Response {
			return &pb.Response{Body: &pb.Response_Register{Register: &pb.RegisterResponse{
				UserId: res.UserID, LoginName: res.User.LoginName}}}
		})
	})
}

func (s *service) login(ss *session, f *pb.ClientFrame) transport.Reply {
	req := f.GetLogin()
	if err := s.limit(ss, false); err != nil {
		return now(s.fail(err))
	}
	if len(req.LoginName) > 4*s.n.cfg.Limits.MaxLoginName ||
		len(req.Password) > s.n.cfg.Limits.MaxPassword {
		return now(s.fail(pb.Errf(pb.Code_WRONG_PASSWORD, "wrong login name or password")))
	}
	return s.later(func(ctx context.Context) *pb.Response {
		u, err := s.n.authenticate(ctx, ss, req.LoginName, req.Password)
		if err != nil {
			return s.fail(err)
		}
		token, hash, err := newToken()
		if err != nil {
			return s.fail(err)
		}
		expires := time.Now().Add(s.n.cfg.SessionTTL).UnixMilli()
		_, err = s.n.exec(ctx, ss, metaShard, &pb.Command{Op: &pb.Command_CreateSession{
			CreateSession: &pb.CreateSessionCmd{UserId: u.Id, CredVersion: u.CredVersion,
				TokenHash: hash, ExpiresMs: expires}}})
		if err != nil {
			return s.fail(err)
		}
		return s.startSession(ctx, ss, u, hash, token, expires)
	})
}

// authenticate checks a login name and password against the meta shard.
// An unknown name costs the same hash as a wrong password, so timing does
// not tell which names exist.
func (n *Node) authenticate(ctx context.Context, ss *session,
	name, password string) (*pb.User, error) {
	var u *pb.User
	err := n.view(ctx, ss, metaShard, func(tx *bolt.Tx) (err error) {
		u, err = fsm.UserByLogin(tx, name)
		return err
	})
	if err != nil {
		return nil, err
	}
	stored := n.dummyHash()
	if u != nil {
		stored = u.PasswordHash
	}
	ok, err := n.hasher.check(ctx, password, stored)
	if err != nil {
		return nil, err
	}
	if !ok || u == nil {
		return nil, pb.Errf(pb.Code_WRONG_PASSWORD, "wrong login name or password")
	}
	return u, nil
}

var dummyOnce struct {
	sync.Once
	hash []byte
}

// dummyHash is a hash of nothing anyone knows, checked for unknown names.
func (n *Node) dummyHash() []byte {
	dummyOnce.Do(func() {
		dummyOnce.hash, _ = hashPassword("no such user", n.cfg.PasswordKDF)
	})
	return dummyOnce.hash
}

func (s *service) resume(ss *session, f *pb.ClientFrame) transport.Reply {
	token := f.GetResume().GetToken()
	after := f.GetResume().GetAfter()
	if len(after) > maxShards+1 {
		return now(s.fail(pb.Errf(pb.Code_BAD_REQUEST,
			"after names more shards than there can be")))
	}
	return s.later(func(ctx context.Context) *pb.Response {
		s.n.awaitWritesElsewhere(ss, after)
		hash := tokenHash(token)
		u, sess, err := s.n.sessionUser(ctx, ss, hash)
		if err != nil {
			return s.fail(err)
		}
		return s.startSession(ctx, ss, u, hash, "", sess.ExpiresMs)
	})
}

// startSession marks the connection logged in, subscribes it to its
// groups' events and answers with everything the client needs to start.
func (s *service) startSession(ctx context.Context, ss *session, u *pb.User, hash []byte,
	token string, expires int64) *pb.Response {
	s.endSession(ss)
	ss.login(u.Id, u.DisplayName, hash, expires)
	var groups []*pb.GroupSummary
	err := s.n.hub.attach(ss, u.Id, func() ([]uint64, error) {
		var err error
		groups, err = s.n.groupsOf(ctx, ss, u.Id)
		ids := make([]uint64, len(groups))
		for i, g := range groups {
			ids[i] = g.GroupId
		}
		return ids, err
	})
	if err != nil {
		ss.logout()
		return s.fail(err)
	}
	ss.renew(expires)
	resp := &pb.LoginResponse{Token: token, TokenExpiresMs: expires, User: selfProfile(u),
		Groups: groups, ServerTimeMs: time.Now().UnixMilli(), Limits: s.n.limits()}
	resp.Incarnation, resp.PreviousIncarnation = s.n.incarnation()
	page := s.n.cfg.Limits.DefaultPage
	resp.Applications, resp.MoreApplications, err = s.n.ownedApplications(ctx, ss, groups,
		appCursor{}, page)
	if err != nil {
		return s.fail(err)
	}
	if resp.Notices, resp.MoreNotices, err = s.n.notices(ctx, ss, u.Id, 0, page); err != nil {
		return s.fail(err)
	}
	return &pb.Response{Body: &pb.Response_Login{Login: resp}}
}

func (s *service) logout(ss *session, _ *pb.ClientFrame) transport.Reply {
	hash := ss.tokenHash()
	// Detach first: the revocation the command publishes then ends only
	// other connections that share this token, not the one asking.
	s.endSession(ss)
	return s.later(func(ctx context.Context) *pb.Response {
		_, err := s.n.exec(ctx, ss, metaShard, &pb.Command{Op: &pb.Command_DeleteSession{
			DeleteSession: &pb.DeleteSessionCmd{TokenHash: hash}}})
		return s.reply(err, func() *pb.Response { return &pb.Response{} })
	})
}

func (s *service) changePassword(ss *session, f *pb.ClientFrame) transport.Reply {
	req := f.GetChangePassword()
	err := firstErr(s.n.cfg.Limits.checkPassword("new password", req.NewPassword),
		s.limit(ss, true))
	if err != nil {
		return now(s.fail(err))
	}
	uid, _ := ss.identity()
	return s.later(func(ctx context.Context) *pb.Response {
		u, err := s.n.user(ctx, ss, uid)
		if err != nil {
			return s.fail(err)
		}
		if ok, err := s.n.hasher.check(ctx, req.OldPassword, u.PasswordHash); err != nil || !ok {
			return s.fail(firstErr(err, pb.Errf(pb.Code_WRONG_PASSWORD, "old password is wrong")))
		}
		return s.setPassword(ctx, ss, u, req.NewPassword)
	})
}

// setPassword stores a new hash, revokes every session of the user and
// hands this connection a fresh token.
func (s *service) setPassword(ctx context.Context, ss *session, u *pb.User,
	pw string) *pb.Response {
	hash, err := s.n.hasher.hash(ctx, pw)
	if err != nil {
		return s.fail(err)
	}
	token, th, err := newToken()
	if err != nil {
		return s.fail(err)
	}
	old := ss.tokenHash()
	ss.setToken(th) // keep this connection when the others are revoked
	expires := time.Now().Add(s.n.cfg.SessionTTL).UnixMilli()
	_, err = s.n.exec(ctx, ss, metaShard, &pb.Command{Op: &pb.Command_ChangePassword{
		ChangePassword: &pb.ChangePasswordCmd{UserId: u.Id, CredVersion: u.CredVersion,
			PasswordHash: hash, NewTokenHash: th, ExpiresMs: expires}}})
	if err != nil {
		ss.setToken(old)
		return s.fail(err)
	}
	ss.renew(expires)
	return &pb.Response{Body: &pb.Response_ChangePassword{
		ChangePassword: &pb.ChangePasswordResponse{Token: token, TokenExpiresMs: expires}}}
}

func (s *service) updateProfile(ss *session, f *pb.ClientFrame) transport.Reply {
	req := f.GetUpdateProfile()
	l := s.n.cfg.Limits
	err := firstErr(
		checkText("display name", req.GetDisplayName(), l.MaxName, req.DisplayName != nil),
		checkText("location", req.GetLocation(), l.MaxName, false),
		checkText("description", req.GetDescription(), l.MaxDescription, false),
		checkText("avatar_file_id", req.GetAvatarFileId(), maxFileID, false))
	if err != nil {
		return now(s.fail(err))
	}
	uid, _ := ss.identity()
	return s.later(func(ctx context.Context) *pb.Response {
		res, err := s.n.exec(ctx, ss, metaShard, &pb.Command{Op: &pb.Command_UpdateProfile{
			UpdateProfile: &pb.UpdateProfileCmd{UserId: uid, DisplayName: req.DisplayName,
				Sex: req.Sex, Location: req.Location, Description: req.Description,
				AvatarFileId: req.AvatarFileId}}})
		if err != nil {
			return s.fail(err)
		}
		ss.setName(res.User.DisplayName)
		return &pb.Response{Body: &pb.Response_Profile{Profile: selfProfile(res.User)}}
	})
}

func (s *service) getProfiles(ss *session, f *pb.ClientFrame) transport.Reply {
	ids := f.GetGetProfiles().GetUserIds()
	if len(ids) > s.n.cfg.Limits.MaxProfiles {
		return now(s.fail(pb.Errf(pb.Code_TOO_LONG, "at most %d profiles per request",
			s.n.cfg.Limits.MaxProfiles)))
	}
	uid, _ := ss.identity()
	return s.later(func(ctx context.Context) *pb.Response {
		out, err := s.n.profiles(ctx, ss, uid, ids)
		return s.reply(err, func() *pb.Response {
			return &pb.Response{Body: &pb.Response_Profiles{Profiles: &pb.GetProfilesResponse{
				Profiles: out}}}
		})
	})
}

// profiles returns what viewer may see of each user: the location only of
// themself and of users who share a group with them.
func (n *Node) profiles(ctx context.Context, ss *session, viewer uint64,
	ids []uint64) ([]*pb.UserProfile, error) {
	mine, err := n.groupsOf(ctx, ss, viewer)
	if err != nil {
		return nil, err
	}
	var out []*pb.UserProfile
	for _, id := range ids {
		u, err := n.user(ctx, ss, id)
		if pe, ok := err.(*pb.Error); ok && pe.Code == pb.Code_NOT_FOUND {
			continue
		}
		if err != nil {
			return nil, err
		}
		p := selfProfile(u)
		if id != viewer {
			shared, err := n.shareGroup(ctx, ss, mine, id)
			if err != nil {
				return nil, err
			}
			if !shared {
				p.Location = ""
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// shareGroup reports whether user is a member of any of the groups.
func (n *Node) shareGroup(ctx context.Context, ss *session, groups []*pb.GroupSummary,
	user uint64) (bool, error) {
	for _, g := range groups {
		var m *pb.Member
		err := n.view(ctx, ss, n.shardOf(g.GroupId), func(tx *bolt.Tx) (err error) {
			m, err = fsm.GetMember(tx, g.GroupId, user)
			return err
		})
		if err != nil || m != nil {
			return m != nil, err
		}
	}
	return false, nil
}

// user reads one user from the meta shard; NOT_FOUND if there is none,
// after a read barrier (see group).
func (n *Node) user(ctx context.Context, ss *session, uid uint64) (*pb.User, error) {
	var u *pb.User
	read := func(tx *bolt.Tx) (err error) {
		u, err = fsm.GetUser(tx, uid)
		return err
	}
	err := n.view(ctx, ss, metaShard, read)
	if err == nil && u == nil {
		if err = n.barrier(ctx, metaShard); err == nil {
			err = n.view(ctx, ss, metaShard, read)
		}
	}
	if err == nil && u == nil {
		err = pb.Errf(pb.Code_NOT_FOUND, "no user %d", uid)
	}
	return u, err
}

// selfProfile is a user's full profile, as they themself see it.
func selfProfile(u *pb.User) *pb.UserProfile {
	return &pb.UserProfile{UserId: u.Id, LoginName: u.LoginName, DisplayName: u.DisplayName,
		Sex: u.Sex, Location: u.Location, Description: u.Description,
		CreatedMs: u.CreatedMs, AvatarFileId: u.AvatarFileId}
}
