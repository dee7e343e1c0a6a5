package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/schat/schat/fsm"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// sendLog records what each sender was told.
type sendLog struct {
	mu    sync.Mutex
	acked map[string]uint64 // client message ID -> seq
	maybe map[string]bool   // sent, outcome unknown
}

func newSendLog() *sendLog {
	return &sendLog{acked: make(map[string]uint64), maybe: make(map[string]bool)}
}

func (l *sendLog) record(id string, m *pb.ChatMessage, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		l.acked[id] = m.Seq
		return
	}
	l.maybe[id] = true
}

// chatter sends to gid through c until stop closes, one message at a time.
func chatter(ctx context.Context, c *transport.Client, gid uint64, prefix string,
	log *sendLog, stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		id := fmt.Sprintf("%s-%d", prefix, i)
		sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		m, err := c.Send(sctx, gid, id, id)
		cancel()
		log.record(id, m, err)
		if errors.Is(err, transport.ErrConnLost) || errors.Is(err, transport.ErrClientClosed) {
			return
		}
	}
}

// crash stops node i the way a power cut would look to the others: its
// node port goes dark first, then it is closed.
func (c *cluster) crash(i int) {
	c.nodes[i].mux.SetIsolated(true)
	c.stop(i)
}

// TestCluster_Failover kills the leader of a group's shard while clients
// on every node send, and, for more than one round, starts it again and
// kills the next leader; afterwards every acknowledged message is present
// exactly once, in the same order on every node, without gaps.
func TestCluster_Failover(t *testing.T) {
	c := newCluster(t, 3)
	ctx := ctxFor(t)
	owner, _ := user(t, c.nodes[0].ClientAddr(), false, "owner")
	g := must(owner.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "g"}))(t)
	shard := c.nodes[0].shardOf(g.GroupId)

	log := newSendLog()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	chat := func(i, round int, cl *transport.Client) {
		go drain(cl)
		wg.Add(1)
		go chatter(context.Background(), cl, g.GroupId, fmt.Sprintf("n%d-r%d", i, round), log,
			stop, &wg)
	}
	for i := range c.nodes {
		cl, l := user(t, c.nodes[i].ClientAddr(), false, fmt.Sprintf("s%d", i))
		must(cl.ApplyGroup(ctx, g.GroupId, "", ""))(t)
		if err := owner.Decide(ctx, g.GroupId, l.User.UserId, true); err != nil {
			t.Fatal(err)
		}
		chat(i, 0, cl)
	}
	c.waitFor("some acknowledged sends", func() bool { return ackCount(log) >= 30 })
	for round := 1; round <= *clusterRounds; round++ {
		began := time.Now()
		victim := c.leader(shard)
		c.crash(victim)
		before := ackCount(log)
		c.waitFor("sends acknowledged after the crash",
			func() bool { return ackCount(log) >= before+30 })
		holdLoad(began)
		if round == *clusterRounds {
			break
		}
		c.start(victim)
		c.waitVoters(3)
		cl := dial(t, c.nodes[victim].ClientAddr(), false)
		must(cl.Login(ctxFor(t), fmt.Sprintf("s%d", victim), fmt.Sprintf("pw-s%d", victim)))(t)
		chat(victim, round, cl)
	}
	close(stop)
	wg.Wait()

	c.waitConverged()
	checkSends(t, c, g.GroupId, log)
}

func ackCount(l *sendLog) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// checkSends reads a group's whole history on every running node and
// checks it against what the senders were told.
func checkSends(t *testing.T, c *cluster, gid uint64, log *sendLog) {
	t.Helper()
	var first []*pb.ChatMessage
	for _, n := range c.running() {
		msgs := storedMessages(t, n, gid)
		checkGapFree(t, msgs)
		seen := make(map[string]uint64)
		for _, m := range msgs {
			if m.ClientMsgId == "" {
				continue
			}
			if _, dup := seen[m.ClientMsgId]; dup {
				t.Fatalf("node %s: message %s stored twice", n.cfg.NodeID, m.ClientMsgId)
			}
			seen[m.ClientMsgId] = m.Seq
		}
		for id, seq := range log.acked {
			if got, ok := seen[id]; !ok || got != seq {
				t.Fatalf("node %s: acknowledged %s at seq %d, stored at %d (present %v)",
					n.cfg.NodeID, id, seq, got, ok)
			}
		}
		if first == nil {
			first = msgs
		} else if len(first) != len(msgs) {
			t.Fatalf("node %s holds %d messages, another %d", n.cfg.NodeID, len(msgs), len(first))
		}
	}
	t.Logf("%d acknowledged, %d unknown outcome, %d stored", len(log.acked), len(log.maybe),
		len(first))
}

// TestCluster_Partition cuts a follower off: it acknowledges no write
// while the majority keeps serving, and catches up when healed. Each
// round cuts off a follower of the group's shard anew.
func TestCluster_Partition(t *testing.T) {
	c := newCluster(t, 3)
	owner, _ := user(t, c.nodes[0].ClientAddr(), false, "owner")
	g := must(owner.CreateGroup(ctxFor(t), &pb.CreateGroupRequest{Name: "g"}))(t)
	go drain(owner)
	m, ml := user(t, c.nodes[0].ClientAddr(), false, "member")
	must(m.ApplyGroup(ctxFor(t), g.GroupId, "", ""))(t)
	if err := owner.Decide(ctxFor(t), g.GroupId, ml.User.UserId, true); err != nil {
		t.Fatal(err)
	}
	m.Close()
	for round := 1; round <= *clusterRounds; round++ {
		partitionRound(t, c, owner, g.GroupId, round)
	}
}

// partitionRound cuts off a follower of gid's shard, checks that the
// member connected to it has no send acknowledged while the owner's are,
// for at least -cluster.duration, heals it, and checks that it holds all
// of the owner's sends in order.
func partitionRound(t *testing.T, c *cluster, owner *transport.Client, gid uint64, round int) {
	ctx := ctxFor(t)
	shard := c.nodes[0].shardOf(gid)
	cut := (c.leader(shard) + 1) % 3
	if c.nodes[cut].shards[metaShard].raft.State() == raft.Leader {
		c.nodes[cut].shards[metaShard].raft.LeadershipTransfer().Error()
	}
	member := dial(t, c.nodes[cut].ClientAddr(), false)
	must(member.Login(ctx, "member", "pw-member"))(t)
	go drain(member)

	began := time.Now()
	c.nodes[cut].mux.SetIsolated(true)
	for i := 0; i < 3; i++ {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := member.Send(sctx, gid, "from the minority", fmt.Sprintf("r%d-min-%d", round, i))
		cancel()
		if err == nil {
			t.Fatalf("round %d: a cut-off node acknowledged a write", round)
		}
	}
	sent := 0
	for ; sent < 10 || time.Since(began) < *clusterDuration; sent++ {
		must(owner.Send(ctxFor(t), gid, fmt.Sprintf("r%d majority %d", round, sent), ""))(t)
	}
	c.nodes[cut].mux.SetIsolated(false)
	c.waitConverged()

	// The healed node has every acknowledged write. The minority's sends
	// were never acknowledged; their outcome was unknown, so they may
	// land once, after the heal.
	msgs := storedMessages(t, c.nodes[cut], gid)
	checkGapFree(t, msgs)
	next := 0
	for _, m := range msgs {
		if m.Text == fmt.Sprintf("r%d majority %d", round, next) {
			next++
		}
	}
	if next != sent {
		t.Fatalf("round %d: healed node has %d of the majority's %d messages in order",
			round, next, sent)
	}
	member.Close()
}

// storedMessages reads every message of gid from n's state.
func storedMessages(t *testing.T, n *Node, gid uint64) []*pb.ChatMessage {
	t.Helper()
	var msgs []*pb.ChatMessage
	err := n.shards[n.shardOf(gid)].fsm.View(func(tx *bolt.Tx) error {
		page, err := fsm.Sync(tx, gid, 0, 1<<20)
		if page != nil {
			msgs = page.Messages
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}
