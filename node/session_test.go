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

func TestNode_SessionExpiry(t *testing.T) {
	cfg := testConfig(t)
	cfg.SessionTTL = time.Millisecond
	n := startNode(t, cfg)
	ctx := ctxT(t)
	_, l := user(t, n.ClientAddr(), false, "dave")
	time.Sleep(5 * time.Millisecond) // let the one-millisecond session lapse
	c := dial(t, n.ClientAddr(), false)
	_, err := c.Resume(ctx, l.Token)
	wantCode(t, err, pb.Code_UNAUTHENTICATED)
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
