package node

import (
	"testing"
	"time"

	pb "github.com/schat/schat/proto"
)

// TestNode_SessionLifecycle covers resume by token, revocation at password
// change and logout, and expiry.
func TestNode_SessionLifecycle(t *testing.T) {
	n := startNode(t, testConfig(t))
	ctx := ctxT(t)
	c1, l := user(t, n.ClientAddr(), false, "carol")
	c2 := dial(t, n.ClientAddr(), false)
	if r := must(c2.Resume(ctx, l.Token))(t); r.User.UserId != l.User.UserId || r.Token != "" {
		t.Fatalf("resume = user %d token %q, want user %d and no new token",
			r.User.UserId, r.Token, l.User.UserId)
	}

	// A password change ends every other session and hands out a new token.
	_, err := c1.ChangePassword(ctx, "wrong-old", "new-secret")
	wantCode(t, err, pb.Code_WRONG_PASSWORD)
	cp := must(c1.ChangePassword(ctx, "pw-carol", "new-secret"))(t)
	waitEvent(t, c2, "session end", func(e *pb.Event) bool { return e.GetSessionEnded() != nil })
	c3 := dial(t, n.ClientAddr(), false)
	_, err = c3.Resume(ctx, l.Token)
	wantCode(t, err, pb.Code_UNAUTHENTICATED)
	_, err = c3.Login(ctx, "carol", "pw-carol")
	wantCode(t, err, pb.Code_WRONG_PASSWORD)
	must(c3.Resume(ctx, cp.Token))(t)
	must(c1.MyGroups(ctx))(t) // the changing connection stays logged in

	// Logout revokes the token everywhere.
	if err := c1.Logout(ctx); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	c4 := dial(t, n.ClientAddr(), false)
	_, err = c4.Resume(ctx, cp.Token)
	wantCode(t, err, pb.Code_UNAUTHENTICATED)
	must(c4.Login(ctx, "CAROL", "new-secret"))(t) // names are case-insensitive
}

// TestNode_SessionExpiry_Live shows a connected session ending at its
// expiry: the client is told, its events stop, its next request is
// refused, and its token no longer resumes; it may log in again.
func TestNode_SessionExpiry_Live(t *testing.T) {
	cfg := testConfig(t)
	cfg.SessionTTL = 300 * time.Millisecond
	n := startNode(t, cfg)
	ctx := ctxT(t)
	c, l := user(t, n.ClientAddr(), false, "dave")
	e := waitEvent(t, c, "session end", func(e *pb.Event) bool {
		return e.GetSessionEnded() != nil
	})
	if got := e.GetSessionEnded().Reason; got != "session expired" {
		t.Fatalf("got reason %q, want session expired", got)
	}
	_, err := c.MyGroups(ctx)
	wantCode(t, err, pb.Code_UNAUTHENTICATED)
	_, err = dial(t, n.ClientAddr(), false).Resume(ctx, l.Token)
	wantCode(t, err, pb.Code_UNAUTHENTICATED)
	must(c.Login(ctx, "dave", "pw-dave"))(t)
}

// TestNode_SessionExpiry_Request refuses a request on a session past its
// expiry even before the timer that ends it fires.
func TestNode_SessionExpiry_Request(t *testing.T) {
	n := startNode(t, testConfig(t))
	ctx := ctxT(t)
	c, _ := user(t, n.ClientAddr(), false, "erik")
	n.svc.sessions.Range(func(_, v any) bool {
		ss := v.(*session)
		ss.mu.Lock()
		ss.expires = time.Now().Add(-time.Second) // its timer is a month away
		ss.mu.Unlock()
		return true
	})
	_, err := c.MyGroups(ctx)
	wantCode(t, err, pb.Code_UNAUTHENTICATED)
	must(c.Ping(ctx))(t) // still connected, and open requests are served
	must(c.Login(ctx, "erik", "pw-erik"))(t)
	must(c.MyGroups(ctx))(t)
}

// TestNode_SessionExpiry_PasswordRenews moves a session's expiry with the
// fresh token a password change hands out.
func TestNode_SessionExpiry_PasswordRenews(t *testing.T) {
	cfg := testConfig(t)
	cfg.SessionTTL = time.Hour
	n := startNode(t, cfg)
	ctx := ctxT(t)
	c, _ := user(t, n.ClientAddr(), false, "fern")
	var ss *session
	n.svc.sessions.Range(func(_, v any) bool {
		if uid, _ := v.(*session).identity(); uid != 0 {
			ss = v.(*session)
		}
		return true
	})
	ss.mu.Lock()
	before := ss.expires
	ss.mu.Unlock()
	cp := must(c.ChangePassword(ctx, "pw-fern", "new-fern"))(t)
	ss.mu.Lock()
	after := ss.expires
	ss.mu.Unlock()
	if !after.After(before) || after.UnixMilli() != cp.TokenExpiresMs {
		t.Fatalf("got expiry %v after the change (before %v), want the new token's %v",
			after, before, time.UnixMilli(cp.TokenExpiresMs))
	}
}

// TestNode_ProfileLocation shows a location only to users sharing a group.
func TestNode_ProfileLocation(t *testing.T) {
	n := startNode(t, testConfig(t))
	ctx := ctxT(t)
	erin, el := user(t, n.ClientAddr(), false, "erin")
	frank, fl := user(t, n.ClientAddr(), false, "frank")
	loc := func() string {
		ps := must(frank.Profiles(ctx, el.User.UserId))(t)
		if len(ps) != 1 {
			t.Fatalf("profiles = %v, want one", ps)
		}
		return ps[0].Location
	}
	if got := loc(); got != "" {
		t.Fatalf("stranger sees location %q, want none", got)
	}
	g := must(erin.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "g"}))(t)
	must(frank.ApplyGroup(ctx, g.GroupId, "", "hi"))(t)
	if err := erin.Decide(ctx, g.GroupId, fl.User.UserId, true); err != nil {
		t.Fatal(err)
	}
	if got := loc(); got != "loc-erin" {
		t.Fatalf("group mate sees location %q, want loc-erin", got)
	}
}
