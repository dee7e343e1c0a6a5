package transport

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	pb "github.com/schat/schat/proto"
)

// The typed helpers below each send one request and return the body of
// its response. A non-OK code comes back as a *pb.Error, so callers branch
// with errors.Is(err, pb.ErrCode(pb.Code_X)) or errors.As.

// call sends f and returns the response if its code is OK.
func (c *Client) call(ctx context.Context, f *pb.ClientFrame) (*pb.Response, error) {
	resp, err := c.Do(ctx, f)
	if err != nil {
		return nil, err
	}
	if resp.Code != pb.Code_OK {
		return nil, &pb.Error{Code: resp.Code, Detail: resp.Detail}
	}
	return resp, nil
}

// body sends f and extracts the body that get picks from an OK response;
// an OK response without it is an error wrapping ErrNoBody.
func body[B any](ctx context.Context, c *Client, f *pb.ClientFrame,
	get func(*pb.Response) *B) (*B, error) {
	resp, err := c.call(ctx, f)
	if err != nil {
		return nil, err
	}
	b := get(resp)
	if b == nil {
		return nil, fmt.Errorf("%w: request %T", ErrNoBody, f.Body)
	}
	return b, nil
}

// Register creates an account.
func (c *Client) Register(ctx context.Context,
	r *pb.RegisterRequest) (*pb.RegisterResponse, error) {
	f := &pb.ClientFrame{Body: &pb.ClientFrame_Register{Register: r}}
	return body(ctx, c, f, (*pb.Response).GetRegister)
}

// Login starts a session with a login name and password.
func (c *Client) Login(ctx context.Context, name, password string) (*pb.LoginResponse, error) {
	f := &pb.ClientFrame{Body: &pb.ClientFrame_Login{Login: &pb.LoginRequest{
		LoginName: name, Password: password,
	}}}
	return body(ctx, c, f, (*pb.Response).GetLogin)
}

// Resume logs this connection in with an existing session token. It names
// the raft indexes of the writes acknowledged to this Client (and, for a
// Session's connection, to the Session's earlier ones), so that the
// server's answers from then on include those writes, whichever node of
// the cluster acknowledged them.
func (c *Client) Resume(ctx context.Context, token string) (*pb.LoginResponse, error) {
	f := &pb.ClientFrame{Body: &pb.ClientFrame_Resume{Resume: &pb.ResumeRequest{Token: token,
		After: c.written.list()}}}
	return body(ctx, c, f, (*pb.Response).GetLogin)
}

// Logout ends the session.
func (c *Client) Logout(ctx context.Context) error {
	_, err := c.call(ctx, &pb.ClientFrame{Body: &pb.ClientFrame_Logout{
		Logout: &pb.LogoutRequest{},
	}})
	return err
}

// Ping measures the round trip; the response carries the server's clock.
func (c *Client) Ping(ctx context.Context) (*pb.PingResponse, error) {
	f := &pb.ClientFrame{Body: &pb.ClientFrame_Ping{Ping: &pb.PingRequest{
		ClientTimeMs: time.Now().UnixMilli(),
	}}}
	return body(ctx, c, f, (*pb.Response).GetPing)
}

// ChangePassword replaces the password; every session is revoked and the
// response carries a fresh token for this one.
func (c *Client) ChangePassword(ctx context.Context,
	old, new string) (*pb.ChangePasswordResponse, error) {
	f := &pb.ClientFrame{Body: &pb.ClientFrame_ChangePassword{
		ChangePassword: &pb.ChangePasswordRequest{OldPassword: old, NewPassword: new},
	}}
	return body(ctx, c, f, (*pb.Response).GetChangePassword)
}

// UpdateProfile changes the profile fields that r sets.
func (c *Client) UpdateProfile(ctx context.Context,
	r *pb.UpdateProfileRequest) (*pb.UserProfile, error) {
	f := &pb.ClientFrame{Body: &pb.ClientFrame_UpdateProfile{UpdateProfile: r}}
	return body(ctx, c, f, (*pb.Response).GetProfile)
}

// Profiles returns the profiles of the given users; unknown IDs are left
// out.
func (c *Client) Profiles(ctx context.Context, ids ...uint64) ([]*pb.UserProfile, error) {
	f := &pb.ClientFrame{Body: &pb.ClientFrame_GetProfiles{
		GetProfiles: &pb.GetProfilesRequest{UserIds: ids},
	}}
	r, err := body(ctx, c, f, (*pb.Response).GetProfiles)
	return r.GetProfiles(), err
}

// CreateGroup creates a group owned by the caller. When r has no
// RequestKey, CreateGroup first sets a random one on r, so that calling
// it again with the same r after an unknown outcome (a timeout, a broken
// connection) creates one group, not two. r must not be used
// concurrently meanwhile.
func (c *Client) CreateGroup(ctx context.Context, r *pb.CreateGroupRequest) (*pb.GroupInfo, error) {
	if r == nil {
		r = &pb.CreateGroupRequest{}
	}
	if r.RequestKey == "" {
		var key [16]byte
		if _, err := rand.Read(key[:]); err != nil {
			return nil, err
		}
		r.RequestKey = hex.EncodeToString(key[:])
	}
	f := &pb.ClientFrame{Body: &pb.ClientFrame_CreateGroup{CreateGroup: r}}
	return body(ctx, c, f, (*pb.Response).GetGroup)
}

// ApplyGroup asks to join group gid.
func (c *Client) ApplyGroup(ctx context.Context,
	gid uint64, password, msg string) (*pb.ApplyGroupResponse, error) {
	f := &pb.ClientFrame{Body: &pb.ClientFrame_ApplyGroup{ApplyGroup: &pb.ApplyGroupRequest{
		GroupId: gid, JoinPassword: password, Message: msg,
	}}}
	return body(ctx, c, f, (*pb.Response).GetApplyGroup)
}

// Decide approves or rejects user uid's application to group gid.
func (c *Client) Decide(ctx context.Context, gid, uid uint64, approve bool) error {
	_, err := c.call(ctx, &pb.ClientFrame{Body: &pb.ClientFrame_DecideApplication{
		DecideApplication: &pb.DecideApplicationRequest{
			GroupId: gid, UserId: uid, Approve: approve,
		},
	}})
	return err
}

// Applications pages through pending applications to group r.GroupId, or
// to every group the caller owns when it is 0: the next page starts after
// the last application of this one, while More is set.
func (c *Client) Applications(ctx context.Context,
	r *pb.ListApplicationsRequest) (*pb.ListApplicationsResponse, error) {
	f := &pb.ClientFrame{Body: &pb.ClientFrame_ListApplications{ListApplications: r}}
	return body(ctx, c, f, (*pb.Response).GetApplications)
}

// Notices pages through the caller's unacknowledged notices with IDs
// above after, in ID order. A limit of 0 asks for the server's default
// page size.
func (c *Client) Notices(ctx context.Context,
	after uint64, limit uint32) (*pb.ListNoticesResponse, error) {
	f := &pb.ClientFrame{Body: &pb.ClientFrame_ListNotices{
		ListNotices: &pb.ListNoticesRequest{AfterId: after, Limit: limit},
	}}
	return body(ctx, c, f, (*pb.Response).GetNotices)
}

// Quit leaves group gid.
func (c *Client) Quit(ctx context.Context, gid uint64) error {
	_, err := c.call(ctx, &pb.ClientFrame{Body: &pb.ClientFrame_QuitGroup{
		QuitGroup: &pb.QuitGroupRequest{GroupId: gid},
	}})
	return err
}

// Kick removes member uid from group gid.
func (c *Client) Kick(ctx context.Context, gid, uid uint64) error {
	_, err := c.call(ctx, &pb.ClientFrame{Body: &pb.ClientFrame_KickMember{
		KickMember: &pb.KickMemberRequest{GroupId: gid, UserId: uid},
	}})
	return err
}

// Dissolve deletes group gid.
func (c *Client) Dissolve(ctx context.Context, gid uint64) error {
	_, err := c.call(ctx, &pb.ClientFrame{Body: &pb.ClientFrame_DissolveGroup{
		DissolveGroup: &pb.DissolveGroupRequest{GroupId: gid},
	}})
	return err
}

// Transfer makes member uid the owner of group gid.
func (c *Client) Transfer(ctx context.Context, gid, uid uint64) error {
	_, err := c.call(ctx, &pb.ClientFrame{Body: &pb.ClientFrame_TransferOwnership{
		TransferOwnership: &pb.TransferOwnershipRequest{GroupId: gid, UserId: uid},
	}})
	return err
}

// GroupInfo describes group gid; members are listed only for members.
func (c *Client) GroupInfo(ctx context.Context, gid uint64) (*pb.GroupInfo, error) {
	f := &pb.ClientFrame{Body: &pb.ClientFrame_GroupInfo{
		GroupInfo: &pb.GroupInfoRequest{GroupId: gid},
	}}
	return body(ctx, c, f, (*pb.Response).GetGroup)
}

// PublicGroups pages through the public groups with IDs above after. A
// limit of 0 asks for the server's default page size.
func (c *Client) PublicGroups(ctx context.Context,
	after uint64, limit uint32) (*pb.ListPublicGroupsResponse, error) {
	f := &pb.ClientFrame{Body: &pb.ClientFrame_ListPublicGroups{
		ListPublicGroups: &pb.ListPublicGroupsRequest{AfterGroupId: after, Limit: limit},
	}}
	return body(ctx, c, f, (*pb.Response).GetPublicGroups)
}

// UpdateGroup changes the group attributes that r sets.
func (c *Client) UpdateGroup(ctx context.Context, r *pb.UpdateGroupRequest) (*pb.GroupInfo, error) {
	f := &pb.ClientFrame{Body: &pb.ClientFrame_UpdateGroup{UpdateGroup: r}}
	return body(ctx, c, f, (*pb.Response).GetGroup)
}

// MyGroups lists the caller's groups with their unread counts.
func (c *Client) MyGroups(ctx context.Context) ([]*pb.GroupSummary, error) {
	f := &pb.ClientFrame{Body: &pb.ClientFrame_ListMyGroups{
		ListMyGroups: &pb.ListMyGroupsRequest{},
	}}
	r, err := body(ctx, c, f, (*pb.Response).GetMyGroups)
	return r.GetGroups(), err
}

// AckNotices acknowledges notices so that they are not delivered again.
func (c *Client) AckNotices(ctx context.Context, ids ...uint64) error {
	_, err := c.call(ctx, &pb.ClientFrame{Body: &pb.ClientFrame_AckNotices{
		AckNotices: &pb.AckNoticesRequest{NoticeIds: ids},
	}})
	return err
}

// Send posts a text message to group gid. A retry with the same
// clientMsgID lands once.
func (c *Client) Send(ctx context.Context,
	gid uint64, text, clientMsgID string) (*pb.ChatMessage, error) {
	f := &pb.ClientFrame{Body: &pb.ClientFrame_SendMessage{SendMessage: &pb.SendMessageRequest{
		GroupId: gid, Type: pb.MessageType_MESSAGE_TYPE_TEXT, Text: text, ClientMsgId: clientMsgID,
	}}}
	return body(ctx, c, f, (*pb.Response).GetMessage)
}

// Recall withdraws message seq of group gid.
func (c *Client) Recall(ctx context.Context, gid, seq uint64) (*pb.ChatMessage, error) {
	f := &pb.ClientFrame{Body: &pb.ClientFrame_RecallMessage{
		RecallMessage: &pb.RecallMessageRequest{GroupId: gid, Seq: seq},
	}}
	return body(ctx, c, f, (*pb.Response).GetMessage)
}

// History pages backwards through group gid: messages before seq before
// (0: from the newest), oldest first.
func (c *Client) History(ctx context.Context,
	gid, before uint64, limit uint32, opts ...ReadOption) (*pb.MessagePage, error) {
	f := &pb.ClientFrame{Body: &pb.ClientFrame_History{History: &pb.HistoryRequest{
		GroupId: gid, BeforeSeq: before, Limit: limit, Linearizable: readOptions(opts).linearizable,
	}}}
	return body(ctx, c, f, (*pb.Response).GetPage)
}

// Sync pages forwards through group gid: messages after seq after, or
// after the caller's read cursor when fromCursor is set and after is 0.
func (c *Client) Sync(ctx context.Context, gid, after uint64, limit uint32, fromCursor bool,
	opts ...ReadOption) (*pb.MessagePage, error) {
	f := &pb.ClientFrame{Body: &pb.ClientFrame_Sync{Sync: &pb.SyncRequest{
		GroupId: gid, AfterSeq: after, Limit: limit, FromCursor: fromCursor,
		Linearizable: readOptions(opts).linearizable,
	}}}
	return body(ctx, c, f, (*pb.Response).GetPage)
}

// ReadOption changes how History and Sync read.
type ReadOption func(*readOpts)

type readOpts struct{ linearizable bool }

// Linearizable makes a read see every write acknowledged before it began,
// through any node, at the cost of a round trip to the shard's leader.
// Without it a read sees at least the caller's own acknowledged writes.
func Linearizable() ReadOption {
	return func(o *readOpts) { o.linearizable = true }
}

func readOptions(opts []ReadOption) readOpts {
	var o readOpts
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// MarkRead moves the caller's read cursor in group gid forward to seq.
func (c *Client) MarkRead(ctx context.Context, gid, seq uint64) (*pb.MarkReadResponse, error) {
	f := &pb.ClientFrame{Body: &pb.ClientFrame_MarkRead{
		MarkRead: &pb.MarkReadRequest{GroupId: gid, Seq: seq},
	}}
	return body(ctx, c, f, (*pb.Response).GetMarkRead)
}
