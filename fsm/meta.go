package fsm

import (
	"bytes"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/storage"
)

// FoldLogin returns the form of a login name that must be unique: two
// names that differ only in case name the same account.
func FoldLogin(name string) string { return strings.ToLower(name) }

// register creates an account.
func (f *FSM) register(a *applyCtx, c *pb.RegisterCmd) (*Result, error) {
	key := []byte(FoldLogin(c.LoginName))
	if err := checkKey("login name", key); err != nil {
		return nil, err
	}
	logins := a.bucket(storage.Logins)
	if has(logins, key) {
		return nil, pb.Errf(pb.Code_NAME_TAKEN, "login name %q is taken", c.LoginName)
	}

	uid, err := storage.NextID(a.tx, storage.CounterUser, firstUserID)
	if err != nil {
		return nil, err
	}
	u := &pb.User{
		Id:           uid,
		LoginName:    c.LoginName,
		PasswordHash: c.PasswordHash,
		CredVersion:  1,
		DisplayName:  c.DisplayName,
		Sex:          c.Sex,
		Location:     c.Location,
		Description:  c.Description,
		CreatedMs:    a.now,
	}
	if u.DisplayName == "" {
		u.DisplayName = c.LoginName
	}
	if err := storage.Put(a.bucket(storage.Users), storage.U64(uid), u); err != nil {
		return nil, err
	}
	if err := logins.Put(key, storage.U64(uid)); err != nil {
		return nil, err
	}
	return &Result{UserID: uid, User: u}, nil
}

// loadUser returns the user, or NOT_FOUND.
func loadUser(a *applyCtx, uid uint64) (*pb.User, error) {
	u, err := GetUser(a.tx, uid)
	if err == nil && u == nil {
		err = pb.Errf(pb.Code_NOT_FOUND, "user %d not found", uid)
	}
	return u, err
}

// checkCred refuses a command whose password check was made against a
// credential that has changed since.
func checkCred(u *pb.User, version uint64) error {
	if u.CredVersion != version {
		return pb.Errf(pb.Code_WRONG_PASSWORD, "credential changed")
	}
	return nil
}

// createSession records a login.
func (f *FSM) createSession(a *applyCtx, c *pb.CreateSessionCmd) (*Result, error) {
	u, err := loadUser(a, c.UserId)
	if err != nil {
		return nil, err
	}
	if err := checkCred(u, c.CredVersion); err != nil {
		return nil, err
	}
	if err := checkKey("token hash", c.TokenHash); err != nil {
		return nil, err
	}
	s, err := GetSession(a.tx, c.TokenHash)
	switch {
	case err != nil:
		return nil, err
	case s != nil && s.UserId == c.UserId:
		return &Result{UserID: u.Id, User: u, Existing: true}, nil
	case s != nil:
		return nil, pb.Errf(pb.Code_INTERNAL, "token hash already in use")
	}

	if err := putSession(a, u.Id, c.TokenHash, c.ExpiresMs); err != nil {
		return nil, err
	}
	return &Result{UserID: u.Id, User: u}, nil
}

// putSession stores a session under both of its keys.
func putSession(a *applyCtx, uid uint64, hash []byte, expiresMs int64) error {
	s := &pb.Session{UserId: uid, CreatedMs: a.now, ExpiresMs: expiresMs}
	if err := storage.Put(a.bucket(storage.Sessions), hash, s); err != nil {
		return err
	}
	return a.bucket(storage.UserSessions).Put(userSessionKey(uid, hash), []byte{})
}

// removeSession deletes a session under both of its keys.
func removeSession(a *applyCtx, uid uint64, hash []byte) error {
	if err := a.bucket(storage.Sessions).Delete(hash); err != nil {
		return err
	}
	return a.bucket(storage.UserSessions).Delete(userSessionKey(uid, hash))
}

// userSessionKey is the UserSessions key of a session.
func userSessionKey(uid uint64, hash []byte) []byte {
	return append(storage.U64(uid), hash...)
}

// deleteSession ends a session (a logout); ending a missing one is a no-op.
func (f *FSM) deleteSession(a *applyCtx, c *pb.DeleteSessionCmd) (*Result, error) {
	if len(c.TokenHash) == 0 {
		return &Result{}, nil
	}
	s, err := GetSession(a.tx, c.TokenHash)
	if err != nil || s == nil {
		return &Result{}, err
	}
	if err := removeSession(a, s.UserId, c.TokenHash); err != nil {
		return nil, err
	}
	a.emit(Event{Users: []uint64{s.UserId}, Revoke: true, RevokeToken: c.TokenHash})
	return &Result{UserID: s.UserId}, nil
}

// changePassword stores a new password hash, ends every session of the
// user and opens a new one for the caller.
func (f *FSM) changePassword(a *applyCtx, c *pb.ChangePasswordCmd) (*Result, error) {
	u, err := loadUser(a, c.UserId)
	if err != nil {
		return nil, err
	}
	if err := checkCred(u, c.CredVersion); err != nil {
		return nil, err
	}
	if err := checkKey("token hash", c.NewTokenHash); err != nil {
		return nil, err
	}

	u.PasswordHash = c.PasswordHash
	u.CredVersion++
	if err := storage.Put(a.bucket(storage.Users), storage.U64(u.Id), u); err != nil {
		return nil, err
	}
	if err := removeUserSessions(a, u.Id); err != nil {
		return nil, err
	}
	if err := putSession(a, u.Id, c.NewTokenHash, c.ExpiresMs); err != nil {
		return nil, err
	}
	a.emit(Event{Users: []uint64{u.Id}, Revoke: true, KeepToken: c.NewTokenHash})
	return &Result{UserID: u.Id, User: u}, nil
}

// removeUserSessions deletes every session of uid.
func removeUserSessions(a *applyCtx, uid uint64) error {
	for _, k := range keysWithPrefix(a.bucket(storage.UserSessions), storage.U64(uid)) {
		if err := removeSession(a, uid, k[8:]); err != nil {
			return err
		}
	}
	return nil
}

// updateProfile sets the profile fields present in the command.
func (f *FSM) updateProfile(a *applyCtx, c *pb.UpdateProfileCmd) (*Result, error) {
	u, err := loadUser(a, c.UserId)
	if err != nil {
		return nil, err
	}
	if c.AvatarFileId != nil {
		err := setAvatar(a, &u.AvatarFileId, *c.AvatarFileId, checkAvatar(
			pb.FilePurpose_FILE_PURPOSE_USER_AVATAR, 0, u.Id))
		if err != nil {
			return nil, err
		}
	}
	if c.DisplayName != nil {
		u.DisplayName = *c.DisplayName
	}
	if c.Sex != nil {
		u.Sex = *c.Sex
	}
	if c.Location != nil {
		u.Location = *c.Location
	}
	if c.Description != nil {
		u.Description = *c.Description
	}
	if err := storage.Put(a.bucket(storage.Users), storage.U64(u.Id), u); err != nil {
		return nil, err
	}
	return &Result{UserID: u.Id, User: u}, nil
}

// reserveGroup allocates a group ID and counts it against its owner.
func (f *FSM) reserveGroup(a *applyCtx, c *pb.ReserveGroupCmd) (*Result, error) {
	var rkey []byte
	if c.RequestKey != "" {
		rkey = append(storage.U64(c.OwnerId), c.RequestKey...)
		if err := checkKey("request key", rkey); err != nil {
			return nil, err
		}
		if v := a.bucket(storage.Reservations).Get(rkey); len(v) == 8 {
			// The retry refreshes the entry, so that a reconciler that read
			// it before does not take it for one left by a crash.
			gid := storage.ReadU64(v, 0)
			return &Result{GroupID: gid, Existing: true}, own(a, c.OwnerId, gid)
		}
	}
	if err := checkOwnedLimit(a, c.OwnerId, c.MaxOwned); err != nil {
		return nil, err
	}

	gid, err := storage.NextID(a.tx, storage.CounterGroup, firstGroupID)
	if err != nil {
		return nil, err
	}
	if err := own(a, c.OwnerId, gid); err != nil {
		return nil, err
	}
	if rkey != nil {
		if err := a.bucket(storage.Reservations).Put(rkey, storage.U64(gid)); err != nil {
			return nil, err
		}
	}
	return &Result{GroupID: gid}, nil
}

// checkOwnedLimit refuses one more group for uid when it owns max already;
// max 0 means no limit.
func checkOwnedLimit(a *applyCtx, uid uint64, max uint32) error {
	if max > 0 && OwnedCount(a.tx, uid) >= int(max) {
		return pb.Errf(pb.Code_LIMIT_EXCEEDED, "user %d owns %d groups already", uid, max)
	}
	return nil
}

// releaseGroup uncounts a group from its owner.
func (f *FSM) releaseGroup(a *applyCtx, c *pb.ReleaseGroupCmd) (*Result, error) {
	if err := disown(a, c.OwnerId, c.GroupId); err != nil {
		return nil, err
	}
	return &Result{GroupID: c.GroupId}, nil
}

// disown deletes owner's Owned entry for gid and the reservations of owner
// that name gid, which would otherwise hand a retry a group owner no
// longer has.
func disown(a *applyCtx, owner, gid uint64) error {
	if err := unown(a, owner, gid); err != nil {
		return err
	}
	res := a.bucket(storage.Reservations)
	var drop [][]byte
	c := res.Cursor()
	prefix := storage.U64(owner)
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(v) == 8 && storage.ReadU64(v, 0) == gid {
			drop = append(drop, bytes.Clone(k))
		}
	}
	for _, k := range drop {
		if err := res.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// moveOwnership moves a group from one owner's count to another's. A
// retry refreshes the new owner's entry, as a reservation's does.
func (f *FSM) moveOwnership(a *applyCtx, c *pb.MoveOwnershipCmd) (*Result, error) {
	existing := has(a.bucket(storage.Owned), storage.U64s(c.ToId, c.GroupId))
	if !existing {
		if err := checkOwnedLimit(a, c.ToId, c.MaxOwned); err != nil {
			return nil, err
		}
	}
	if err := disown(a, c.FromId, c.GroupId); err != nil {
		return nil, err
	}
	if err := own(a, c.ToId, c.GroupId); err != nil {
		return nil, err
	}
	return &Result{GroupID: c.GroupId, Existing: existing}, nil
}

// pruneSessions deletes every session that has expired by the command's
// time. It reads every session: the cost grows with the number of them.
func (f *FSM) pruneSessions(a *applyCtx) (*Result, error) {
	var drop []expiredSession
	err := eachExpired(a.tx, a.now, func(e expiredSession) bool {
		drop = append(drop, e)
		return true
	})
	if err != nil {
		return nil, err
	}
	for _, e := range drop {
		if err := removeSession(a, e.uid, e.hash); err != nil {
			return nil, err
		}
	}
	return &Result{}, nil
}

// SessionsExpired reports whether some session has expired by nowMs, so
// that a node proposes a prune only then.
func SessionsExpired(tx *bolt.Tx, nowMs int64) (bool, error) {
	found := false
	err := eachExpired(tx, nowMs, func(expiredSession) bool {
		found = true
		return false
	})
	return found, err
}

// expiredSession names a session to drop.
type expiredSession struct {
	uid  uint64
	hash []byte
}

// eachExpired calls fn with every session expired by nowMs, in token hash
// order, until fn returns false.
func eachExpired(tx *bolt.Tx, nowMs int64, fn func(expiredSession) bool) error {
	c := tx.Bucket(storage.Sessions).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		var s pb.Session
		if err := proto.Unmarshal(v, &s); err != nil {
			return fmt.Errorf("decode session: %w", err)
		}
		if s.ExpiresMs <= nowMs && !fn(expiredSession{s.UserId, bytes.Clone(k)}) {
			return nil
		}
	}
	return nil
}
