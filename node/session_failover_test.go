package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// failoverMessages is how many messages each failover test sends.
const failoverMessages = 240

// failoverCase says whose node a failover test crashes, and how.
type failoverCase struct {
	name        string
	crashSender bool // crash the sender's node, else the reader's
	// cutFirst isolates the reader's node, a follower of the group's
	// shard, until the sender has had more messages acknowledged, and
	// only then crashes it: the reader misses those and must catch up.
	// Otherwise the crashed node leads the group's shard.
	cutFirst bool
}

// TestSession_Failover crashes, while a sender streams numbered messages
// into a group, the node that one party's Session is connected to. That
// Session reconnects to another node; afterwards the reader's event
// stream holds every message of the group since its login exactly once,
// in seq order, without gaps, as the group stores them, and the group
// holds each sent message exactly once with the seq its sender was told.
func TestSession_Failover(t *testing.T) {
	for _, tc := range []failoverCase{
		{name: "reader's node leads"},
		{name: "reader's node cut off first", cutFirst: true},
		{name: "sender's node leads", crashSender: true},
	} {
		t.Run(tc.name, func(t *testing.T) { testSessionFailover(t, tc) })
	}
}

func testSessionFailover(t *testing.T, tc failoverCase) {
	c := newCluster(t, 3)
	ctx := ctxFor(t)
	owner, _ := user(t, c.nodes[0].ClientAddr(), false, "owner")
	go drain(owner)
	g := must(owner.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "g"}))(t)
	joinGroup(t, c, owner, g.GroupId, "reader")
	joinGroup(t, c, owner, g.GroupId, "sender")

	// The party whose node is crashed uses a Session on it; the sender's
	// Session doubles as its retrying client.
	leader := c.leader(c.nodes[0].shardOf(g.GroupId))
	victim, other := leader, (leader+1)%3
	if tc.cutFirst {
		victim, other = other, leader
	}
	victimAddr := c.nodes[victim].ClientAddr()
	readerAt, senderAt := victim, other
	if tc.crashSender {
		readerAt, senderAt = other, victim
	}
	reader, login := sessionOn(t, c, readerAt, "reader")
	var snd msgSender
	switched := reader
	if tc.crashSender {
		s, _ := sessionOn(t, c, senderAt, "sender")
		go drainSession(s)
		snd, switched = s, s
	} else {
		cl := dial(t, c.nodes[senderAt].ClientAddr(), false)
		must(cl.Login(ctx, "sender", "pw-sender"))(t)
		go drain(cl)
		snd = cl
	}
	from := lastSeqOf(login, g.GroupId) + 1

	// Stream; crash the victim once the reader has a third, and hold the
	// sender at two thirds until the crash is over, so that messages are
	// sent before, during and after it.
	crashed := make(chan struct{})
	sent := make(chan sendOutcome, 1)
	var acked atomic.Int64
	go func() {
		sent <- sendNumbered(context.Background(), snd, g.GroupId, failoverMessages,
			&acked, crashed)
	}()
	got, res := collectStream(t, reader, g.GroupId, sent, func() {
		go func() {
			defer close(crashed)
			if tc.cutFirst {
				c.nodes[victim].mux.SetIsolated(true)
				awaitAcks(&acked, min(acked.Load()+30, 2*failoverMessages/3))
			}
			c.crash(victim)
		}()
	})
	<-crashed

	checkStream(t, got, from, res)
	checkStoredStream(t, reader, g.GroupId, from, got)
	select {
	case r := <-switched.Reconnects():
		t.Logf("reconnect %d to %s caught up %d messages; failed sends: %v",
			r.Count, r.Addr, r.CaughtUp, res.failures)
		if r.Addr == victimAddr || r.Addr == "" {
			t.Fatalf("reconnected to %q, want a surviving node", r.Addr)
		}
		if tc.cutFirst && r.CaughtUp == 0 {
			t.Fatalf("the reader missed messages while cut off, but caught up none")
		}
	default:
		t.Fatalf("the Session on the crashed node did not report a reconnect")
	}
}

// awaitAcks polls until acked reaches n, for at most 20 seconds; the
// stream's own deadline reports a sender that stalls.
func awaitAcks(acked *atomic.Int64, n int64) {
	deadline := time.Now().Add(20 * time.Second)
	for acked.Load() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// joinGroup registers name and makes it a member of gid.
func joinGroup(t *testing.T, c *cluster, owner *transport.Client, gid uint64, name string) {
	t.Helper()
	cl, l := user(t, c.nodes[0].ClientAddr(), false, name)
	must(cl.ApplyGroup(ctxFor(t), gid, "", ""))(t)
	if err := owner.Decide(ctxFor(t), gid, l.User.UserId, true); err != nil {
		t.Fatal(err)
	}
	cl.Close()
}

// sessionOn starts a Session that knows every node's address, starting
// with node i's, and logs name in.
func sessionOn(t *testing.T, c *cluster, i int, name string) (*transport.Session,
	*pb.LoginResponse) {
	t.Helper()
	var addrs []string
	for k := range c.nodes {
		addrs = append(addrs, c.nodes[(i+k)%len(c.nodes)].ClientAddr())
	}
	s, err := transport.NewSession(context.Background(), transport.SessionConfig{
		Addrs: addrs, ReconnectWait: 50 * time.Millisecond, Logger: sessionLogger(t),
	})
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, must(s.Login(ctxFor(t), name, "pw-"+name))(t)
}

func drainSession(s *transport.Session) {
	for range s.Events() {
	}
}

func lastSeqOf(l *pb.LoginResponse, gid uint64) uint64 {
	for _, g := range l.Groups {
		if g.GroupId == gid {
			return g.LastSeq
		}
	}
	return 0
}

// msgSender is what sendNumbered needs of a Client or a Session.
type msgSender interface {
	Send(ctx context.Context, gid uint64, text, clientMsgID string) (*pb.ChatMessage, error)
}

// sendOutcome is what a sender was told.
type sendOutcome struct {
	seqs     map[string]uint64 // text (and client message ID) -> seq
	last     uint64
	failures map[string]int // error text -> how many sends failed with it
	err      error
}

// sendNumbered sends n numbered messages to gid one after another, each
// with its text as client message ID, retrying a failure that may heal
// with the same ID, and counts acknowledgements in acked. Before message
// 2n/3 it waits for hold to close.
func sendNumbered(ctx context.Context, s msgSender, gid uint64, n int,
	acked *atomic.Int64, hold <-chan struct{}) sendOutcome {
	res := sendOutcome{seqs: make(map[string]uint64), failures: make(map[string]int)}
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < n; i++ {
		if i == 2*n/3 {
			<-hold
		}
		id := fmt.Sprintf("m-%03d", i)
		for {
			sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			m, err := s.Send(sctx, gid, id, id)
			cancel()
			if err == nil {
				res.seqs[id] = m.Seq
				res.last = max(res.last, m.Seq)
				acked.Add(1)
				break
			}
			res.failures[err.Error()]++
			if !sendMayHeal(err) || time.Now().After(deadline) {
				res.err = fmt.Errorf("send %s: %w", id, err)
				return res
			}
		}
	}
	return res
}

// sendMayHeal says whether a failed send may succeed if sent again. A
// forwarded write whose leader dies mid-call comes back INTERNAL rather
// than TIMEOUT; its outcome is just as unknown, so it is retried too.
func sendMayHeal(err error) bool {
	return errors.Is(err, transport.ErrConnLost) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, pb.ErrCode(pb.Code_UNAVAILABLE)) ||
		errors.Is(err, pb.ErrCode(pb.Code_TIMEOUT)) ||
		errors.Is(err, pb.ErrCode(pb.Code_INTERNAL))
}

// collectStream reads the reader's message events of gid until the sender has
// finished and its last seq has arrived. It calls crash once, when a third
// of the messages have arrived.
func collectStream(t *testing.T, reader *transport.Session, gid uint64,
	sent <-chan sendOutcome, crash func()) ([]*pb.ChatMessage, sendOutcome) {
	t.Helper()
	var got []*pb.ChatMessage
	var res sendOutcome
	done, seenLast := false, false
	deadline := time.After(90 * time.Second)
	for !done || !seenLast {
		select {
		case e, ok := <-reader.Events():
			if !ok {
				t.Fatalf("reader's events ended after %d messages: %v", len(got), reader.Err())
			}
			m := e.GetMessage()
			if m == nil || m.GroupId != gid {
				continue
			}
			got = append(got, m)
			if len(got) == failoverMessages/3 {
				crash()
			}
			seenLast = seenLast || done && m.Seq == res.last
		case res = <-sent:
			if res.err != nil {
				t.Fatalf("sender: %v", res.err)
			}
			done = true
			for _, m := range got {
				seenLast = seenLast || m.Seq == res.last
			}
			sent = nil
		case <-deadline:
			t.Fatalf("reader has %d messages after 90s; sender done %v", len(got), done)
		}
	}
	return got, res
}

// checkStream checks that got holds seqs from..res.last once each, in
// order, and that each sent message is in it with the seq its sender was
// told.
func checkStream(t *testing.T, got []*pb.ChatMessage, from uint64, res sendOutcome) {
	t.Helper()
	for i, m := range got {
		if want := from + uint64(i); m.Seq != want {
			t.Fatalf("message %d of the stream has seq %d, want %d (gap, duplicate or disorder)",
				i, m.Seq, want)
		}
	}
	if n := len(got); n == 0 || got[n-1].Seq != res.last {
		t.Fatalf("stream ends before seq %d", res.last)
	}
	byText := make(map[string]uint64)
	for _, m := range got {
		if _, dup := byText[m.Text]; dup && strings.HasPrefix(m.Text, "m-") {
			t.Fatalf("message %s is in the stream twice", m.Text)
		}
		byText[m.Text] = m.Seq
	}
	for id, seq := range res.seqs {
		if byText[id] != seq {
			t.Fatalf("sender was told %s has seq %d; in the stream at %d", id, seq, byText[id])
		}
	}
	if len(res.seqs) != failoverMessages {
		t.Fatalf("sender has %d acknowledgements, want %d", len(res.seqs), failoverMessages)
	}
}

// checkStoredStream checks that the group as stored, read through the reader's
// current node, from seq from on, is exactly the stream got.
func checkStoredStream(t *testing.T, s *transport.Session, gid, from uint64,
	got []*pb.ChatMessage) {
	t.Helper()
	var stored []*pb.ChatMessage
	after := from - 1
	for {
		page := must(s.Sync(ctxFor(t), gid, after, 0, false))(t)
		stored = append(stored, page.Messages...)
		if !page.More || len(page.Messages) == 0 {
			break
		}
		after = page.Messages[len(page.Messages)-1].Seq
	}
	if len(stored) != len(got) {
		t.Fatalf("group stores %d messages from seq %d, the stream has %d",
			len(stored), from, len(got))
	}
	for i := range stored {
		if stored[i].Seq != got[i].Seq || stored[i].ClientMsgId != got[i].ClientMsgId {
			t.Fatalf("stored seq %d is %q, the stream's %d is %q", stored[i].Seq,
				stored[i].ClientMsgId, got[i].Seq, got[i].ClientMsgId)
		}
	}
}

// sessionLogger logs through t at info level.
func sessionLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
