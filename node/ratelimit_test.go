package node

import (
	"context"
	"testing"
	"time"

	pb "github.com/schat/schat/proto"
)

// rateConfig allows one hashed request per address and per user in a
// burst, and the next only 30 seconds later: far beyond any test.
func rateConfig(t testing.TB) Config {
	cfg := testConfig(t)
	cfg.RatePerMinute = 2
	return cfg
}

// Requests as raw frames; ask gives each a fresh id.
func regFrame(name string) *pb.ClientFrame {
	return &pb.ClientFrame{Body: &pb.ClientFrame_Register{Register: &pb.RegisterRequest{
		LoginName: name, Password: "pw-" + name}}}
}

func loginFrame(name, pw string) *pb.ClientFrame {
	return &pb.ClientFrame{Body: &pb.ClientFrame_Login{Login: &pb.LoginRequest{
		LoginName: name, Password: pw}}}
}

func resumeFrame(token string) *pb.ClientFrame {
	return &pb.ClientFrame{Body: &pb.ClientFrame_Resume{Resume: &pb.ResumeRequest{Token: token}}}
}

func applyFrame(gid uint64, pw string) *pb.ClientFrame {
	return &pb.ClientFrame{Body: &pb.ClientFrame_ApplyGroup{ApplyGroup: &pb.ApplyGroupRequest{
		GroupId: gid, JoinPassword: pw}}}
}

func passwdFrame(old, new string) *pb.ClientFrame {
	return &pb.ClientFrame{Body: &pb.ClientFrame_ChangePassword{
		ChangePassword: &pb.ChangePasswordRequest{OldPassword: old, NewPassword: new}}}
}

func createFrame(name, pw string) *pb.ClientFrame {
	return &pb.ClientFrame{Body: &pb.ClientFrame_CreateGroup{CreateGroup: &pb.CreateGroupRequest{
		Name: name, JoinPassword: pw}}}
}

var nextRawID uint64

// ask sends f with a fresh id and fails unless the answer has code want.
func ask(t testing.TB, r *rawClient, f *pb.ClientFrame, want pb.Code) *pb.Response {
	t.Helper()
	nextRawID++
	f.Id = nextRawID
	resp := r.request(f)
	if resp.Id != f.Id || resp.Code != want {
		t.Fatalf("%T: got id %d code %v (%s), want id %d code %v", f.Body, resp.Id, resp.Code,
			resp.Detail, f.Id, want)
	}
	return resp
}

// loggedIn registers name from one address and logs it in from another,
// returning the session token; each address spends its one token.
func loggedIn(t testing.TB, addr, name, regIP, loginIP string) string {
	t.Helper()
	ask(t, dialRawFrom(t, addr, regIP), regFrame(name), pb.Code_OK)
	r := dialRawFrom(t, addr, loginIP)
	return ask(t, r, loginFrame(name, "pw-"+name), pb.Code_OK).GetLogin().Token
}

// TestNode_RateLimit shows each request that costs a password hash refused
// with RATE_LIMITED once its client address, or its user, has spent the
// burst, while other addresses are still served.
func TestNode_RateLimit(t *testing.T) {
	n := startNode(t, rateConfig(t))
	addr := n.ClientAddr()

	t.Run("register", func(t *testing.T) {
		r := dialRawFrom(t, addr, "127.0.1.1")
		ask(t, r, regFrame("reg1"), pb.Code_OK)
		ask(t, r, regFrame("reg2"), pb.Code_RATE_LIMITED)
		ask(t, dialRawFrom(t, addr, "127.0.1.2"), regFrame("reg2"), pb.Code_OK)
	})
	t.Run("login", func(t *testing.T) {
		ask(t, dialRawFrom(t, addr, "127.0.2.1"), regFrame("log1"), pb.Code_OK)
		r := dialRawFrom(t, addr, "127.0.2.2")
		ask(t, r, loginFrame("log1", "wrong"), pb.Code_WRONG_PASSWORD)
		ask(t, r, loginFrame("log1", "pw-log1"), pb.Code_RATE_LIMITED)
		ask(t, dialRawFrom(t, addr, "127.0.2.3"), loginFrame("log1", "pw-log1"), pb.Code_OK)
	})
	t.Run("apply", func(t *testing.T) {
		owner := loggedIn(t, addr, "owner1", "127.0.3.1", "127.0.3.2")
		o := dialRawFrom(t, addr, "127.0.3.3")
		ask(t, o, resumeFrame(owner), pb.Code_OK)
		gid := ask(t, o, createFrame("g", ""), pb.Code_OK).GetGroup().GroupId
		guesser := loggedIn(t, addr, "guess1", "127.0.3.4", "127.0.3.5")

		// A second guess from the same address is refused; so is one from
		// a fresh address, which the user's own bucket stops.
		r := dialRawFrom(t, addr, "127.0.3.6")
		ask(t, r, resumeFrame(guesser), pb.Code_OK)
		ask(t, r, applyFrame(gid, "guess"), pb.Code_OK) // no password: any is fine
		ask(t, r, applyFrame(gid, "again"), pb.Code_RATE_LIMITED)
		r2 := dialRawFrom(t, addr, "127.0.3.7")
		ask(t, r2, resumeFrame(guesser), pb.Code_OK)
		ask(t, r2, applyFrame(gid, "again"), pb.Code_RATE_LIMITED)
	})
	t.Run("passwd", func(t *testing.T) {
		token := loggedIn(t, addr, "pass1", "127.0.4.1", "127.0.4.2")
		r := dialRawFrom(t, addr, "127.0.4.3")
		ask(t, r, resumeFrame(token), pb.Code_OK)
		ask(t, r, passwdFrame("guess", "new-pw"), pb.Code_WRONG_PASSWORD)
		ask(t, r, passwdFrame("pw-pass1", "new-pw"), pb.Code_RATE_LIMITED)

		// A stolen token used from another address gets no more guesses.
		r2 := dialRawFrom(t, addr, "127.0.4.4")
		ask(t, r2, resumeFrame(token), pb.Code_OK)
		ask(t, r2, passwdFrame("pw-pass1", "new-pw"), pb.Code_RATE_LIMITED)

		other := loggedIn(t, addr, "pass2", "127.0.4.5", "127.0.4.6")
		r3 := dialRawFrom(t, addr, "127.0.4.7")
		ask(t, r3, resumeFrame(other), pb.Code_OK)
		ask(t, r3, passwdFrame("pw-pass2", "new-pw"), pb.Code_OK)
	})
	t.Run("join-password", func(t *testing.T) {
		token := loggedIn(t, addr, "maker1", "127.0.5.1", "127.0.5.2")
		r := dialRawFrom(t, addr, "127.0.5.3")
		ask(t, r, resumeFrame(token), pb.Code_OK)
		ask(t, r, createFrame("open", ""), pb.Code_OK) // hashes nothing
		ask(t, r, createFrame("locked", "join-pw"), pb.Code_OK)
		ask(t, r, createFrame("locked2", "join-pw"), pb.Code_RATE_LIMITED)

		// The limit is the user's: another user at the same address, whose
		// own tokens are untouched, is served.
		other := loggedIn(t, addr, "maker2", "127.0.5.4", "127.0.5.5")
		r2 := dialRawFrom(t, addr, "127.0.5.3")
		ask(t, r2, resumeFrame(other), pb.Code_OK)
		ask(t, r2, createFrame("locked3", "join-pw"), pb.Code_OK)
	})
}

// TestNode_HashBound shows a login refused with RATE_LIMITED when no
// hashing slot frees up in time, and served once one is free.
func TestNode_HashBound(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxHashes = 1
	cfg.HashWait = 50 * time.Millisecond
	n := startNode(t, cfg)
	ctx := ctxT(t)
	user(t, n.ClientAddr(), false, "hasty")

	n.hasher.slots <- struct{}{} // hold the only slot
	c := dial(t, n.ClientAddr(), false)
	_, err := c.Login(ctx, "hasty", "pw-hasty")
	wantCode(t, err, pb.Code_RATE_LIMITED)
	n.hasher.release()
	must(c.Login(ctx, "hasty", "pw-hasty"))(t)
}

// TestHasher_Acquire shows a full hasher making requests wait until a slot
// frees, up to its wait or their context's end.
func TestHasher_Acquire(t *testing.T) {
	h := newHasher(testKDF, 2, time.Hour)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := h.acquire(ctx); err != nil {
			t.Fatalf("acquire %d of 2: %v", i, err)
		}
	}

	// A third waits for a release.
	waited := make(chan error, 1)
	go func() { waited <- h.acquire(ctx) }()
	h.release()
	if err := <-waited; err != nil {
		t.Fatalf("got %v from a waiting acquire after a release, want a slot", err)
	}

	// A waiter whose context ends gives up with the context's error.
	cctx, cancel := context.WithCancel(ctx)
	go func() { waited <- h.acquire(cctx) }()
	cancel()
	if err := <-waited; err != context.Canceled {
		t.Fatalf("got %v from an acquire whose context ended, want context.Canceled", err)
	}

	// One that outwaits the hasher's patience is refused.
	h.wait = time.Millisecond
	_, err := h.hash(ctx, "pw")
	wantCode(t, err, pb.Code_RATE_LIMITED)
}
