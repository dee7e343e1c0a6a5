package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// The crash tests stop `schat serve` under load, by SIGKILL or by SIGTERM,
// start it again on the same data directory and check, through the Go
// client, that every acknowledged write survived exactly once.

// crashRounds is how many times TestServe_Kill9 kills the server and starts
// it again on the same data directory. One round keeps plain `go test`
// fast; raise it for a soak, for example:
//
//	go test ./cli -run TestServe_Kill9 -crash.rounds=50 -timeout 30m
var crashRounds = flag.Int("crash.rounds", 1,
	"kill-and-restart rounds of TestServe_Kill9")

const (
	// crashAcked is how many sends must be acknowledged in a round before
	// the server is killed.
	crashAcked = 2000
	// crashSenders is how many goroutines send on each connection at once.
	crashSenders = 8
	// crashPage is the page size for reading a group back.
	crashPage = 200
)

// sendRecord is one send of the kill test: what was asked and what the
// client learned of its fate.
type sendRecord struct {
	gid    uint64
	sender uint64
	id     string // client message ID, unique in the test
	text   string

	acked bool   // an OK response came back, before or after the restart
	seq   uint64 // the acknowledged seq; 0 while not acknowledged
}

// crashUser is an account of the kill test and its current connection.
type crashUser struct {
	name string
	uid  uint64
	gid  uint64 // the group it sends to
	c    *transport.Client
}

// ledger is everything the kill test sent, across rounds.
type ledger struct {
	byID    map[string]*sendRecord
	streams [][]*sendRecord // each sender goroutine's sends, in order
}

// TestServe_Kill9 kills the server with SIGKILL while several connections
// pipeline sends, restarts it on the same data directory and checks every
// group's history: seqs without gaps, each acknowledged message exactly
// once at its acknowledged seq, no client message ID twice, and each
// sender goroutine's messages in the order it sent them. Each send that
// was not acknowledged is then retried with its client message ID and
// must land exactly once. Users 0 and 1 share a group, so that it takes
// interleaved senders; users 2 and 3 each have their own.
func TestServe_Kill9(t *testing.T) {
	t.Parallel()
	opts := serverOptions{dataDir: t.TempDir(), clientAddr: freeAddr(t),
		httpAddr: freeAddr(t), raftAddr: freeAddr(t)}
	srv := startServer(t, opts)
	users := crashSetup(t, srv.clientAddr)
	l := &ledger{byID: make(map[string]*sendRecord)}

	for round := 1; round <= *crashRounds; round++ {
		st := l.sendUntilKilled(t, srv, users, round)
		srv = startServer(t, opts)
		lastSeqs := crashLogin(t, srv.clientAddr, users)
		found := l.verify(t, users, lastSeqs)
		pending := l.retry(t, users, found, lastSeqs)
		l.verify(t, users, nil)

		t.Logf("round %d: %d sends acknowledged, %d not (%d of those present "+
			"after the restart), %d awaiting their response at the kill",
			round, st.acked.Load(), len(pending), len(found), st.atKill)
		if t.Failed() {
			return
		}
	}
}

// TestServe_RestartClean stops the server with SIGTERM and starts it again
// on the same data directory: users, the group, its messages and the read
// cursors are as they were, and nothing is applied twice. Alice's messages
// carry no client message ID, so a re-applied send would be stored again;
// the user and group ID counters would skip a number.
func TestServe_RestartClean(t *testing.T) {
	t.Parallel()
	opts := serverOptions{dataDir: t.TempDir(), clientAddr: freeAddr(t),
		httpAddr: freeAddr(t), raftAddr: freeAddr(t)}
	srv := startServer(t, opts)
	ctx := testCtx(t)

	// Alice and bob share a group; alice reads all but bob's last four.
	alice, al := account(t, srv.clientAddr, "alice", true)
	bob, bl := account(t, srv.clientAddr, "bob", true)
	aliceID, bobID := al.User.GetUserId(), bl.User.GetUserId()
	g, err := alice.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "g"})
	if err != nil {
		t.Fatalf("create group: %v", err)
	}
	gid := g.GroupId
	if _, err := bob.ApplyGroup(ctx, gid, "", "hi"); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if err := alice.Decide(ctx, gid, bobID, true); err != nil {
		t.Fatalf("approve: %v", err)
	}
	for i := range 20 {
		if _, err := alice.Send(ctx, gid, fmt.Sprintf("a%d", i), ""); err != nil {
			t.Fatalf("alice's send %d: %v", i, err)
		}
	}
	var last uint64
	for i := range 10 {
		m, err := bob.Send(ctx, gid, fmt.Sprintf("b%d", i), fmt.Sprintf("b%d", i))
		if err != nil {
			t.Fatalf("bob's send %d: %v", i, err)
		}
		last = m.Seq
	}
	if _, err := alice.MarkRead(ctx, gid, last-4); err != nil {
		t.Fatalf("mark read: %v", err)
	}
	before := readRestartState(t, alice, bob, gid)
	if got := unreadIn(before.alice, gid); got != 4 {
		t.Fatalf("got %d unread for alice, want 4", got)
	}
	if got := unreadIn(before.bob, gid); got != 0 {
		t.Fatalf("got %d unread for bob, want 0", got)
	}

	// Stop gracefully and start again on the same directory.
	if err := srv.stopWith(t, syscall.SIGTERM); err != nil {
		t.Fatalf("got exit %v after SIGTERM, want status 0; log:\n%s", err, srv.logs)
	}
	srv = startServer(t, opts)
	alice, al = account(t, srv.clientAddr, "alice", false)
	bob, bl = account(t, srv.clientAddr, "bob", false)
	if got, got2 := al.User.GetUserId(), bl.User.GetUserId(); got != aliceID || got2 != bobID {
		t.Fatalf("got users %d and %d after the restart, want %d and %d",
			got, got2, aliceID, bobID)
	}
	after := readRestartState(t, alice, bob, gid)
	before.compare(t, after)

	// The counters carry on where they stopped.
	carol, err := alice.Register(ctx, &pb.RegisterRequest{LoginName: "carol",
		Password: "pw-carol"})
	if err != nil {
		t.Fatalf("register carol: %v", err)
	}
	if carol.UserId != bobID+1 {
		t.Errorf("got user %d for carol, want %d", carol.UserId, bobID+1)
	}
	g2, err := alice.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "g2"})
	if err != nil {
		t.Fatalf("create second group: %v", err)
	}
	if g2.GroupId != gid+1 {
		t.Errorf("got group %d, want %d", g2.GroupId, gid+1)
	}
	m, err := bob.Send(ctx, gid, "after", "")
	if err != nil {
		t.Fatalf("send after the restart: %v", err)
	}
	if m.Seq != last+1 {
		t.Errorf("got seq %d after the restart, want %d", m.Seq, last+1)
	}
}

// restartState is what TestServe_RestartClean compares across a restart.
type restartState struct {
	alice, bob []*pb.GroupSummary // MyGroups of each
	msgs       []*pb.ChatMessage  // the group's history
}

func readRestartState(t *testing.T, alice, bob *transport.Client, gid uint64) restartState {
	t.Helper()
	ctx := testCtx(t)
	var s restartState
	var err error
	if s.alice, err = alice.MyGroups(ctx); err != nil {
		t.Fatalf("alice's groups: %v", err)
	}
	if s.bob, err = bob.MyGroups(ctx); err != nil {
		t.Fatalf("bob's groups: %v", err)
	}
	s.msgs, _ = readGroup(t, alice, gid)
	return s
}

// compare fails the test unless after is the same state as s.
func (s restartState) compare(t *testing.T, after restartState) {
	t.Helper()
	for _, c := range []struct {
		who         string
		got, before []*pb.GroupSummary
	}{{"alice", after.alice, s.alice}, {"bob", after.bob, s.bob}} {
		if !equalAll(c.got, c.before) {
			t.Errorf("got %s's groups %v after the restart, want %v", c.who, c.got, c.before)
		}
	}
	if len(after.msgs) != len(s.msgs) {
		t.Fatalf("got %d messages after the restart, want %d", len(after.msgs), len(s.msgs))
	}
	if !equalAll(after.msgs, s.msgs) {
		t.Errorf("got history %v after the restart, want %v", after.msgs, s.msgs)
	}
}

// equalAll reports whether a and b hold equal messages in the same order.
func equalAll[M proto.Message](a, b []M) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// unreadIn returns the unread count of group gid in gs.
func unreadIn(gs []*pb.GroupSummary, gid uint64) uint64 {
	for _, g := range gs {
		if g.GroupId == gid {
			return g.Unread
		}
	}
	return 0
}

// account connects to addr as user name (password "pw-" + name),
// registering the user first when register is set, and returns the
// logged-in client and its login response.
func account(t *testing.T, addr, name string,
	register bool) (*transport.Client, *pb.LoginResponse) {
	t.Helper()
	ctx := testCtx(t)
	c := dialServer(t, addr)
	if register {
		_, err := c.Register(ctx, &pb.RegisterRequest{LoginName: name, Password: "pw-" + name})
		if err != nil {
			t.Fatalf("register %s: %v", name, err)
		}
	}
	l, err := c.Login(ctx, name, "pw-"+name)
	if err != nil {
		t.Fatalf("login %s: %v", name, err)
	}
	return c, l
}

// crashSetup registers the users, each on its own connection, and makes
// their groups.
func crashSetup(t *testing.T, addr string) []*crashUser {
	ctx := testCtx(t)
	users := make([]*crashUser, 4)
	for i := range users {
		u := &crashUser{name: fmt.Sprintf("crash%d", i)}
		var l *pb.LoginResponse
		u.c, l = account(t, addr, u.name, true)
		u.uid = l.User.GetUserId()
		users[i] = u
	}

	for _, i := range []int{0, 2, 3} {
		g, err := users[i].c.CreateGroup(ctx, &pb.CreateGroupRequest{
			Name: "g-" + users[i].name})
		if err != nil {
			t.Fatalf("create group of %s: %v", users[i].name, err)
		}
		users[i].gid = g.GroupId
	}
	users[1].gid = users[0].gid
	if _, err := users[1].c.ApplyGroup(ctx, users[1].gid, "", "hi"); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if err := users[0].c.Decide(ctx, users[0].gid, users[1].uid, true); err != nil {
		t.Fatalf("approve: %v", err)
	}
	return users
}

// sendState is shared by the sender goroutines of one round.
type sendState struct {
	acked    atomic.Int64
	inFlight atomic.Int64
	killed   atomic.Bool

	atKill int64 // sends awaiting their response when the kill was sent

	enough chan struct{} // closed at crashAcked acknowledgements or a failure
	once   sync.Once
}

func (st *sendState) stop() { st.once.Do(func() { close(st.enough) }) }

// sendUntilKilled runs crashSenders goroutines per user that send as fast
// as they are answered, kills the server once crashAcked sends of the
// round are acknowledged, and waits for the goroutines to stop.
func (l *ledger) sendUntilKilled(t *testing.T, srv *testServer, users []*crashUser,
	round int) *sendState {
	ctx := testCtx(t)
	st := &sendState{enough: make(chan struct{})}
	var wg sync.WaitGroup
	var streams []*sendStream
	for _, u := range users {
		for g := range crashSenders {
			s := &sendStream{st: st, user: u, prefix: fmt.Sprintf("r%d-%s-g%d", round, u.name, g)}
			streams = append(streams, s)
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.err = s.run(ctx)
			}()
		}
	}

	// Kill the server mid-stream: every goroutine has a send outstanding
	// or is about to make one.
	select {
	case <-st.enough:
	case <-time.After(processWait):
	}
	st.killed.Store(true)
	st.atKill = st.inFlight.Load()
	srv.kill(t)
	wg.Wait()

	for _, s := range streams {
		if s.err != nil {
			t.Error(s.err)
		}
		l.streams = append(l.streams, s.records)
		for _, r := range s.records {
			l.byID[r.id] = r
		}
	}
	if n := st.acked.Load(); n < crashAcked && !t.Failed() {
		t.Fatalf("got %d acknowledged sends within %v, want %d", n, processWait, crashAcked)
	}
	if t.Failed() {
		t.FailNow()
	}
	return st
}

// sendStream is one sender goroutine of the kill test. Its fields below st
// belong to the goroutine until it ends.
type sendStream struct {
	st     *sendState
	user   *crashUser
	prefix string

	records []*sendRecord
	err     error
}

// run sends until a send fails. Before the kill a failure is the server's
// fault; after it only a lost connection is expected.
func (s *sendStream) run(ctx context.Context) error {
	for i := 0; ; i++ {
		id := fmt.Sprintf("%s-%d", s.prefix, i)
		r := &sendRecord{gid: s.user.gid, sender: s.user.uid, id: id, text: "text of " + id}
		s.records = append(s.records, r)
		s.st.inFlight.Add(1)
		m, err := s.user.c.Send(ctx, r.gid, r.text, r.id)
		s.st.inFlight.Add(-1)
		switch {
		case err == nil:
			r.acked, r.seq = true, m.Seq
			if s.st.acked.Add(1) == crashAcked {
				s.st.stop()
			}
			if !sameMessage(m, r) {
				s.st.stop()
				return fmt.Errorf("got acknowledgement %v for send %s, want its "+
					"group, sender, text and ID", m, id)
			}
		case !s.st.killed.Load():
			s.st.stop()
			return fmt.Errorf("send %s before the kill: %w", id, err)
		case !errors.Is(err, transport.ErrConnLost):
			return fmt.Errorf("send %s at the kill: got %w, want a lost connection", id, err)
		default:
			return nil
		}
	}
}

// sameMessage reports whether m is the text message that r sent.
func sameMessage(m *pb.ChatMessage, r *sendRecord) bool {
	return m.GroupId == r.gid && m.SenderId == r.sender && m.Text == r.text &&
		m.ClientMsgId == r.id && m.Type == pb.MessageType_MESSAGE_TYPE_TEXT && !m.Recalled
}

// crashLogin dials again for every user after a restart and logs in with
// the same password. It returns each group's last seq as the logins
// report it.
func crashLogin(t *testing.T, addr string, users []*crashUser) map[uint64]uint64 {
	last := make(map[uint64]uint64)
	for _, u := range users {
		u.c.Close()
		var r *pb.LoginResponse
		u.c, r = account(t, addr, u.name, false)
		if got := r.User.GetUserId(); got != u.uid {
			t.Fatalf("login %s after the restart: got user %d, want %d", u.name, got, u.uid)
		}
		var seen bool
		for _, g := range r.Groups {
			if g.GroupId != u.gid {
				continue
			}
			if prev, ok := last[g.GroupId]; ok && prev != g.LastSeq {
				t.Errorf("group %d: got last seq %d at %s's login, %d at another's",
					g.GroupId, g.LastSeq, u.name, prev)
			}
			last[g.GroupId], seen = g.LastSeq, true
		}
		if !seen {
			t.Fatalf("login %s after the restart: got groups %v, want group %d among them",
				u.name, r.Groups, u.gid)
		}
	}
	return last
}

// verify reads every group back and checks it against the ledger: seqs
// from 1 without a gap, every message one the test sent (or a system
// note), no client message ID twice, each acknowledged send at its seq,
// and each stream's messages in the order it sent them. A send not
// acknowledged may be present once or absent; verify returns the seqs of
// those present. When lastSeqs is not nil each group must end at the seq
// it gives.
func (l *ledger) verify(t *testing.T, users []*crashUser,
	lastSeqs map[uint64]uint64) map[string]uint64 {
	t.Helper()
	seqOf := make(map[string]uint64) // client message ID -> seq
	read := make(map[uint64]bool)
	for _, u := range users {
		if read[u.gid] {
			continue
		}
		read[u.gid] = true
		msgs, last := readGroup(t, u.c, u.gid)
		if want, ok := lastSeqs[u.gid]; ok && last != want {
			t.Errorf("group %d: got last seq %d, want %d as the login said", u.gid, last, want)
		}
		l.checkGroup(t, u.gid, msgs, seqOf)
	}

	found := make(map[string]uint64)
	for _, r := range l.byID {
		seq, ok := seqOf[r.id]
		switch {
		case r.acked && seq != r.seq:
			t.Errorf("send %s acknowledged at seq %d: got it at seq %d (0: missing)",
				r.id, r.seq, seq)
		case !r.acked && ok:
			found[r.id] = seq
		}
	}
	l.checkStreams(t, seqOf)
	return found
}

// checkGroup checks the messages of group gid, oldest first, and records
// the seq of each client message ID in seqOf.
func (l *ledger) checkGroup(t *testing.T, gid uint64, msgs []*pb.ChatMessage,
	seqOf map[string]uint64) {
	t.Helper()
	for i, m := range msgs {
		if want := uint64(i + 1); m.Seq != want || m.GroupId != gid {
			t.Errorf("group %d: got message %d of group %d at position %d, want seq %d",
				gid, m.Seq, m.GroupId, i, want)
			return
		}
		if m.Type == pb.MessageType_MESSAGE_TYPE_SYSTEM {
			continue
		}
		r := l.byID[m.ClientMsgId]
		if r == nil || !sameMessage(m, r) {
			t.Errorf("group %d: got message %v, which was never sent", gid, m)
			continue
		}
		if prev, dup := seqOf[m.ClientMsgId]; dup {
			t.Errorf("group %d: got client message ID %q at seqs %d and %d, want it once",
				gid, m.ClientMsgId, prev, m.Seq)
			continue
		}
		seqOf[m.ClientMsgId] = m.Seq
	}
}

// checkStreams checks that each stream's messages are stored in the order
// it sent them: a goroutine sends the next only after the previous is
// acknowledged, so seqs rise and nothing follows a missing send.
func (l *ledger) checkStreams(t *testing.T, seqOf map[string]uint64) {
	t.Helper()
	for _, st := range l.streams {
		var prev *sendRecord
		var missing string
		for _, r := range st {
			seq, ok := seqOf[r.id]
			switch {
			case !ok:
				missing = r.id
			case missing != "":
				t.Errorf("send %s is at seq %d though the earlier send %s is missing",
					r.id, seq, missing)
			case prev != nil && seq <= seqOf[prev.id]:
				t.Errorf("send %s is at seq %d, not after the earlier send %s at seq %d",
					r.id, seq, prev.id, seqOf[prev.id])
			}
			if ok {
				prev = r
			}
		}
	}
}

// retry sends every unacknowledged send again with its client message ID,
// twice. One that was present after the restart (in found) must come back
// at the seq it has; one that was missing must land after the group's
// last seq. It returns the sends it retried.
func (l *ledger) retry(t *testing.T, users []*crashUser, found map[string]uint64,
	lastSeqs map[uint64]uint64) []*sendRecord {
	t.Helper()
	ctx := testCtx(t)
	byUID := make(map[uint64]*crashUser)
	for _, u := range users {
		byUID[u.uid] = u
	}
	var pending []*sendRecord
	for _, st := range l.streams {
		for _, r := range st {
			if !r.acked {
				pending = append(pending, r)
			}
		}
	}

	for _, r := range pending {
		m, err := byUID[r.sender].c.Send(ctx, r.gid, r.text, r.id)
		if err != nil {
			t.Fatalf("retry %s: %v", r.id, err)
		}
		want, present := found[r.id]
		switch {
		case !sameMessage(m, r):
			t.Errorf("retry %s: got %v, want its group, sender, text and ID", r.id, m)
		case present && m.Seq != want:
			t.Errorf("retry %s, present at seq %d: got seq %d, want the same",
				r.id, want, m.Seq)
		case !present && m.Seq <= lastSeqs[r.gid]:
			t.Errorf("retry %s, missing: got seq %d, want one after the last seq %d",
				r.id, m.Seq, lastSeqs[r.gid])
		}
		r.acked, r.seq = true, m.Seq
	}

	// A second retry finds the message the first one left.
	for _, r := range pending {
		m, err := byUID[r.sender].c.Send(ctx, r.gid, r.text, r.id)
		if err != nil {
			t.Fatalf("retry %s again: %v", r.id, err)
		}
		if m.Seq != r.seq {
			t.Errorf("retry %s again: got seq %d, want %d", r.id, m.Seq, r.seq)
		}
	}
	return pending
}

// readGroup reads group gid forwards with Sync and backwards with History
// and fails the test unless both give the same messages. It returns them
// oldest first, with the group's last seq.
func readGroup(t *testing.T, c *transport.Client, gid uint64) ([]*pb.ChatMessage, uint64) {
	t.Helper()
	ctx := testCtx(t)
	var fwd []*pb.ChatMessage
	var last uint64
	for after := uint64(0); ; {
		p, err := c.Sync(ctx, gid, after, crashPage, false)
		if err != nil {
			t.Fatalf("sync group %d after seq %d: %v", gid, after, err)
		}
		fwd, last = append(fwd, p.Messages...), p.LastSeq
		if !p.More {
			break
		}
		if len(p.Messages) == 0 {
			t.Fatalf("group %d: got an empty page after seq %d with more to come", gid, after)
		}
		after = p.Messages[len(p.Messages)-1].Seq
	}

	var pages [][]*pb.ChatMessage
	for before := uint64(0); ; {
		p, err := c.History(ctx, gid, before, crashPage)
		if err != nil {
			t.Fatalf("history of group %d before seq %d: %v", gid, before, err)
		}
		pages = append(pages, p.Messages)
		if !p.More {
			break
		}
		if len(p.Messages) == 0 {
			t.Fatalf("group %d: got an empty page before seq %d with more to come", gid, before)
		}
		before = p.Messages[0].Seq
	}
	var back []*pb.ChatMessage
	for i := len(pages) - 1; i >= 0; i-- {
		back = append(back, pages[i]...)
	}

	if len(fwd) != len(back) {
		t.Fatalf("group %d: got %d messages forwards, %d backwards", gid, len(fwd), len(back))
	}
	for i := range fwd {
		if !proto.Equal(fwd[i], back[i]) {
			t.Fatalf("group %d: got %v forwards, %v backwards", gid, fwd[i], back[i])
		}
	}
	if n := len(fwd); n == 0 || fwd[n-1].Seq != last {
		t.Errorf("group %d: got last seq %d, want that of the newest message", gid, last)
	}
	return fwd, last
}

// dialServer connects a Go client to addr. It drains the client's events,
// which the crash tests do not look at, so that the connection is never
// dropped as a slow consumer; the draining ends with the connection.
func dialServer(t testing.TB, addr string) *transport.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), processWait)
	defer cancel()
	c, err := transport.Dial(ctx, transport.ClientConfig{Addr: addr})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		for range c.Events() {
		}
	}()
	return c
}

// testCtx returns a context that ends after processWait or with the test.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), processWait)
	t.Cleanup(cancel)
	return ctx
}
