package fsm

import (
	"bytes"
	"fmt"
	"math"
	"slices"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/storage"
)

// The read functions below take a transaction the caller owns, normally
// the one FSM.View hands out. The records they return are fresh copies the
// caller may keep and change. A missing record is nil with no error; an
// error means the state could not be decoded.

// DefaultPage is the page size History, Sync and PublicGroups use for a
// limit below 1.
const DefaultPage = 50

// GetUser returns user uid.
func GetUser(tx *bolt.Tx, uid uint64) (*pb.User, error) {
	return getRecord[pb.User](tx, storage.Users, storage.U64(uid))
}

// UserByLogin returns the user whose login name folds to the same as name.
func UserByLogin(tx *bolt.Tx, name string) (*pb.User, error) {
	v := tx.Bucket(storage.Logins).Get([]byte(FoldLogin(name)))
	if len(v) != 8 {
		return nil, nil
	}
	return GetUser(tx, storage.ReadU64(v, 0))
}

// GetSession returns the session whose token hash is tokenHash. It does
// not look at the expiry: that is the caller's to check.
func GetSession(tx *bolt.Tx, tokenHash []byte) (*pb.Session, error) {
	if len(tokenHash) == 0 {
		return nil, nil
	}
	return getRecord[pb.Session](tx, storage.Sessions, tokenHash)
}

// OwnedCount returns how many groups user uid owns.
func OwnedCount(tx *bolt.Tx, uid uint64) int {
	n := 0
	prefix := storage.U64(uid)
	c := tx.Bucket(storage.Owned).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		n++
	}
	return n
}

// GetGroup returns group gid. Its join password hash must not leave the
// server: hand clients GroupInfo instead.
func GetGroup(tx *bolt.Tx, gid uint64) (*pb.Group, error) {
	return getRecord[pb.Group](tx, storage.Groups, storage.U64(gid))
}

// GetMember returns the membership of user uid in group gid.
func GetMember(tx *bolt.Tx, gid, uid uint64) (*pb.Member, error) {
	return getRecord[pb.Member](tx, storage.Members, storage.U64s(gid, uid))
}

// Members returns the members of group gid in user ID order.
func Members(tx *bolt.Tx, gid uint64) ([]*pb.Member, error) {
	return scan[pb.Member](tx, storage.Members, storage.U64(gid), storage.U64(gid), 0)
}

// GroupsOfUser returns a summary of each group user uid is a member of, in
// group ID order, with the unread count read from the member's cursor.
func GroupsOfUser(tx *bolt.Tx, uid uint64) ([]*pb.GroupSummary, error) {
	var out []*pb.GroupSummary
	for _, k := range keysWithPrefix(tx.Bucket(storage.UserGroups), storage.U64(uid)) {
		gid := storage.ReadU64(k, 8)
		g, err := GetGroup(tx, gid)
		if err != nil {
			return nil, err
		}
		m, err := GetMember(tx, gid, uid)
		if err != nil {
			return nil, err
		}
		if g == nil || m == nil {
			continue
		}
		out = append(out, &pb.GroupSummary{
			GroupId: gid,
			Name:    g.Name,
			Role:    m.Role,
			LastSeq: g.LastSeq,
			ReadSeq: m.ReadSeq,
			Unread:  unread(g, m.ReadSeq),

			RestoredSeq: storage.RestoredSeq(tx, gid),
		})
	}
	return out, nil
}

// unread is how many messages of g that are still kept follow read.
func unread(g *pb.Group, read uint64) uint64 {
	read = max(read, g.TrimmedSeq)
	if read >= g.LastSeq {
		return 0
	}
	return g.LastSeq - read
}

// Applications returns up to max (0: all) pending applications to group
// gid from applicants with IDs above afterUID, in applicant ID order.
func Applications(tx *bolt.Tx, gid, afterUID uint64, max int) ([]*pb.Application, error) {
	if afterUID == math.MaxUint64 {
		return nil, nil
	}
	return scan[pb.Application](tx, storage.Apps, storage.U64(gid),
		storage.U64s(gid, afterUID+1), max)
}

// History returns up to limit messages of group gid with seq below
// beforeSeq (0: from the newest), oldest first. More says older messages
// remain; none do before the first the retention limits kept. It returns
// nil for a missing group.
func History(tx *bolt.Tx, gid, beforeSeq uint64, limit int) (*pb.MessagePage, error) {
	g, err := GetGroup(tx, gid)
	if err != nil || g == nil {
		return nil, err
	}
	if beforeSeq == 0 || beforeSeq > g.LastSeq {
		beforeSeq = g.LastSeq + 1
	}
	page := newPage(g)
	prefix := storage.U64(gid)
	c := tx.Bucket(storage.Messages).Cursor()
	k, v := c.Seek(storage.U64s(gid, beforeSeq))
	if k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Prev() {
		if len(page.Messages) == pageLimit(limit) {
			page.More = true
			break
		}
		m, err := decode[pb.ChatMessage](k, v)
		if err != nil {
			return nil, err
		}
		page.Messages = append(page.Messages, m)
	}
	slices.Reverse(page.Messages)
	return page, nil
}

// Sync returns up to limit messages of group gid with seq above afterSeq,
// oldest first; from a seq the retention limits removed, it starts at the
// first they kept. More says newer messages remain. It returns nil for a
// missing group.
func Sync(tx *bolt.Tx, gid, afterSeq uint64, limit int) (*pb.MessagePage, error) {
	g, err := GetGroup(tx, gid)
	if err != nil || g == nil {
		return nil, err
	}
	page := newPage(g)
	afterSeq = max(afterSeq, g.TrimmedSeq)
	if afterSeq >= g.LastSeq {
		return page, nil
	}
	msgs, err := scan[pb.ChatMessage](tx, storage.Messages, storage.U64(gid),
		storage.U64s(gid, afterSeq+1), pageLimit(limit)+1)
	if err != nil {
		return nil, err
	}
	if len(msgs) > pageLimit(limit) {
		msgs, page.More = msgs[:pageLimit(limit)], true
	}
	page.Messages = msgs
	return page, nil
}

// newPage is an empty page of g's messages.
func newPage(g *pb.Group) *pb.MessagePage {
	return &pb.MessagePage{GroupId: g.Id, LastSeq: g.LastSeq, FirstSeq: g.TrimmedSeq + 1}
}

// PublicGroups returns up to limit public groups with IDs above afterGID,
// in ID order, and the afterGID of the next page (0: no more).
func PublicGroups(tx *bolt.Tx, afterGID uint64, limit int) ([]*pb.Group, uint64, error) {
	if afterGID == math.MaxUint64 {
		return nil, 0, nil
	}
	var out []*pb.Group
	c := tx.Bucket(storage.Public).Cursor()
	for k, _ := c.Seek(storage.U64(afterGID + 1)); k != nil; k, _ = c.Next() {
		if len(out) == pageLimit(limit) {
			return out, out[len(out)-1].Id, nil
		}
		g, err := GetGroup(tx, storage.ReadU64(k, 0))
		if err != nil {
			return nil, 0, err
		}
		if g != nil {
			out = append(out, g)
		}
	}
	return out, 0, nil
}

// Notices returns up to max (0: all) unacknowledged notices of user uid
// with IDs above afterID, in ID order: oldest first.
func Notices(tx *bolt.Tx, uid, afterID uint64, max int) ([]*pb.Notice, error) {
	if afterID == math.MaxUint64 {
		return nil, nil
	}
	return scan[pb.Notice](tx, storage.Notices, storage.U64(uid),
		storage.U64s(uid, afterID+1), max)
}

// GroupInfo describes g for clients, with members if given; it says only
// whether the group has a join password, never what its hash is. It
// returns nil for a nil group.
func GroupInfo(g *pb.Group, members []*pb.Member) *pb.GroupInfo {
	if g == nil {
		return nil
	}
	return &pb.GroupInfo{
		GroupId:      g.Id,
		Name:         g.Name,
		Description:  g.Description,
		OwnerId:      g.OwnerId,
		Public:       g.Public,
		HasPassword:  len(g.JoinPasswordHash) > 0,
		MemberCount:  g.MemberCount,
		LastSeq:      g.LastSeq,
		CreatedMs:    g.CreatedMs,
		Members:      members,
		AvatarFileId: g.AvatarFileId,
	}
}

// getMessage returns message seq of group gid.
func getMessage(tx *bolt.Tx, gid, seq uint64) (*pb.ChatMessage, error) {
	return getRecord[pb.ChatMessage](tx, storage.Messages, storage.U64s(gid, seq))
}

func pageLimit(limit int) int {
	if limit < 1 {
		return DefaultPage
	}
	return limit
}

// record is a pointer to a generated message struct.
type record[T any] interface {
	*T
	proto.Message
}

// getRecord decodes the record at key of bucket, or returns nil.
func getRecord[T any, P record[T]](tx *bolt.Tx, bucket, key []byte) (P, error) {
	v := tx.Bucket(bucket).Get(key)
	if v == nil {
		return nil, nil
	}
	return decode[T, P](key, v)
}

func decode[T any, P record[T]](k, v []byte) (P, error) {
	m := P(new(T))
	if err := proto.Unmarshal(v, m); err != nil {
		return nil, fmt.Errorf("decode %x: %w", k, err)
	}
	return m, nil
}

// scan decodes the records of bucket whose keys start with prefix, from
// key start on, at most max of them (0: all).
func scan[T any, P record[T]](tx *bolt.Tx, bucket, prefix, start []byte,
	max int) ([]P, error) {
	var out []P
	c := tx.Bucket(bucket).Cursor()
	for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if max > 0 && len(out) == max {
			break
		}
		m, err := decode[T, P](k, v)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}
