package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// The workload of the cluster system tests: users on every node send to
// several groups at once while the test breaks the cluster, and every
// send is recorded with what its sender was told, to be checked against
// the histories the nodes hold afterwards.

const (
	// sysGroups is how many groups a system test sends to; with the
	// default two group shards both take load.
	sysGroups = 4
	// sysUsersPerNode is how many users are connected to each node.
	sysUsersPerNode = 2
	// sysSendTimeout bounds one send of a sender goroutine.
	sysSendTimeout = 2 * time.Second
	// sysProbeTimeout bounds one send to a node that is cut off.
	sysProbeTimeout = 1500 * time.Millisecond
	// dockerCutFor is how long a node stays cut off from the others.
	dockerCutFor = 4 * time.Second
	// sysWarmup is how many sends each node acknowledges before the
	// first node is killed.
	sysWarmup = 100
	// sysProgress is how many acknowledged sends show that a node takes
	// writes.
	sysProgress = 10
)

// The cluster system tests (three processes, three containers) break the
// cluster once by default. For a long run raise the rounds and the time
// each break lasts under load, for example:
//
//	go test ./cli -run 'TestServe_ThreeNodeKill9|TestDocker_ThreeNodeCluster' \
//		-cluster.rounds=10 -cluster.duration=30s -timeout 2h
var (
	clusterRounds = flag.Int("cluster.rounds", 1,
		"times each cluster system test breaks the cluster and lets it heal")
	clusterDuration = flag.Duration("cluster.duration", 0,
		"least time each break of a cluster system test lasts under load")
)

// holdLoad lets the senders run until at least -cluster.duration has
// passed since since: the length of a long run, not a wait for a
// condition.
func holdLoad(since time.Time) {
	time.Sleep(time.Until(since.Add(*clusterDuration)))
}

// sysWait bounds each wait of a system test: for a cluster to form,
// for an election, for a node to catch up.
const sysWait = 30 * time.Second

func without(nodes []*sysNode, n *sysNode) []*sysNode {
	var out []*sysNode
	for _, o := range nodes {
		if o != n {
			out = append(out, o)
		}
	}
	return out
}

// sysUser is an account of a system test, connected to one node.
type sysUser struct {
	name string
	uid  uint64
	node *sysNode
	c    *transport.Client // replaced when the node comes back
}

// sysSend is one send of a system test and what its sender learned.
type sysSend struct {
	*sendRecord
	node       *sysNode
	start, end time.Time
	err        error // why it failed, if it did
}

// workload is the users and groups of a system test and the
// record of every send made.
type workload struct {
	t     *testing.T
	nodes []*sysNode
	users []*sysUser
	gids  []uint64
	stop  chan struct{}
	wg    sync.WaitGroup
	round int

	mu      sync.Mutex
	sends   []*sysSend
	streams map[string][]*sysSend // each sender goroutine's sends, in order
	live    map[string]*sysNode   // the streams whose senders run, and their node
}

// newWorkload registers sysUsersPerNode users on every node, has
// users on different nodes create the groups, and makes every user a
// member of every group.
func newWorkload(t *testing.T, nodes []*sysNode) *workload {
	w := &workload{t: t, nodes: nodes, stop: make(chan struct{}),
		streams: make(map[string][]*sysSend), live: make(map[string]*sysNode)}
	for k := range sysUsersPerNode {
		for _, n := range nodes {
			u := &sysUser{name: fmt.Sprintf("%s-user%d", n.id, k), node: n}
			var l *pb.LoginResponse
			u.c, l = account(t, n.clientAddr, u.name, true)
			u.uid = l.User.GetUserId()
			w.users = append(w.users, u)
		}
	}

	ctx := testCtx(t)
	for i := range sysGroups {
		owner := w.users[i%len(w.users)]
		g, err := owner.c.CreateGroup(ctx, &pb.CreateGroupRequest{Name: fmt.Sprintf("g%d", i)})
		if err != nil {
			t.Fatalf("%s creates group %d on %s: %v", owner.name, i, owner.node.id, err)
		}
		w.gids = append(w.gids, g.GroupId)
		for _, u := range w.users {
			if u == owner {
				continue
			}
			if _, err := u.c.ApplyGroup(ctx, g.GroupId, "", "hi"); err != nil {
				t.Fatalf("%s applies to group %d on %s: %v", u.name, g.GroupId, u.node.id, err)
			}
			if err := owner.c.Decide(ctx, g.GroupId, u.uid, true); err != nil {
				t.Fatalf("%s approves %s in group %d: %v", owner.name, u.name, g.GroupId, err)
			}
		}
	}
	return w
}

// startSenders starts one sender goroutine per group for every user
// connected to one of nodes.
func (w *workload) startSenders(nodes ...*sysNode) {
	w.round++
	for _, u := range w.users {
		if !contains(nodes, u.node) {
			continue
		}
		for _, gid := range w.gids {
			prefix := fmt.Sprintf("r%d-%s-g%d", w.round, u.name, gid)
			w.mu.Lock()
			w.live[prefix] = u.node
			w.mu.Unlock()
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				w.sendLoop(u, u.c, gid, prefix)
			}()
		}
	}
}

func contains(nodes []*sysNode, n *sysNode) bool {
	for _, o := range nodes {
		if o == n {
			return true
		}
	}
	return false
}

// sendLoop sends to group gid through c, one send after the other, until
// the workload stops or c's connection ends. A send that fails is not
// retried; the next one has a new client message ID. The send that finds
// the connection gone is made and recorded too, failed, as a user's would
// be: it is how the stream learns that its node is lost, even when the
// connection ends between two sends.
func (w *workload) sendLoop(u *sysUser, c *transport.Client, gid uint64,
	prefix string) {
	for i := 0; ; i++ {
		select {
		case <-w.stop:
			return
		default:
		}
		s := w.send(u, c, gid, fmt.Sprintf("%s-%d", prefix, i), prefix, sysSendTimeout)
		if s.acked {
			continue
		}
		if c.Err() != nil {
			return
		}
		select {
		case <-w.stop:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// send makes one send with its own client message ID, records it under
// stream and returns the record. It fails the test if the answer is
// anything but an acknowledgement of this very message or a sign that
// the cluster cannot take it now.
func (w *workload) send(u *sysUser, c *transport.Client, gid uint64,
	id, stream string, timeout time.Duration) *sysSend {
	s := &sysSend{sendRecord: &sendRecord{gid: gid, sender: u.uid, id: id,
		text: "text of " + id}, node: u.node, start: time.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	m, err := c.Send(ctx, gid, s.text, id)
	cancel()
	s.end, s.err = time.Now(), err
	switch {
	case err == nil && !sameMessage(m, s.sendRecord):
		w.t.Errorf("got acknowledgement %v for send %s, want its group, sender, text and ID",
			m, id)
	case err == nil:
		s.acked, s.seq = true, m.Seq
	}
	w.mu.Lock()
	w.sends = append(w.sends, s)
	w.streams[stream] = append(w.streams[stream], s)
	w.mu.Unlock()
	return s
}

// unavailable reports whether err says that a send could not be carried
// out for now: no leader, no answer in time, or no connection.
func unavailable(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, transport.ErrConnLost) || errors.Is(err, transport.ErrClientClosed) ||
		errors.Is(err, pb.ErrCode(pb.Code_UNAVAILABLE)) ||
		errors.Is(err, pb.ErrCode(pb.Code_TIMEOUT))
}

// count returns how many sends through nodes that started at or after
// since match.
func (w *workload) count(nodes []*sysNode, since time.Time,
	match func(*sysSend) bool) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, s := range w.sends {
		if contains(nodes, s.node) && !s.start.Before(since) && match(s) {
			n++
		}
	}
	return n
}

// waitAcks waits until each of nodes has acknowledged want sends made
// since since.
func (w *workload) waitAcks(what string, since time.Time, want int,
	nodes ...*sysNode) {
	w.t.Helper()
	deadline := time.Now().Add(sysWait)
	for _, n := range nodes {
		isAcked := func(s *sysSend) bool { return s.acked }
		for w.count([]*sysNode{n}, since, isAcked) < want {
			if time.Now().After(deadline) {
				w.t.Fatalf("%s: %s acknowledged %d sends within %v, want %d", what, n.id,
					w.count([]*sysNode{n}, since, isAcked), sysWait, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// waitFailed waits until every sender on n has seen a send fail after
// since, and fails the test if n acknowledged any send made after dead,
// when it was certainly gone.
func (w *workload) waitFailed(n *sysNode, since, dead time.Time) {
	w.t.Helper()
	deadline := time.Now().Add(sysWait)
	for {
		waiting := w.sendersWithoutFailure(n, since)
		if waiting == 0 {
			break
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%d senders on the killed %s saw no failed send within %v",
				waiting, n.id, sysWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
	acked := func(s *sysSend) bool { return s.acked }
	if got := w.count([]*sysNode{n}, dead, acked); got > 0 {
		w.t.Errorf("got %d sends acknowledged by %s after it was killed, want 0", got, n.id)
	}
}

// sendersWithoutFailure counts the running senders on n none of whose
// sends answered after since has failed.
func (w *workload) sendersWithoutFailure(n *sysNode, since time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	waiting := 0
	for prefix, node := range w.live {
		if node != n {
			continue
		}
		failed := false
		for _, s := range w.streams[prefix] {
			failed = failed || (!s.acked && s.end.After(since))
		}
		if !failed {
			waiting++
		}
	}
	return waiting
}

// disconnect closes the connections of n's users, which ends their
// senders.
func (w *workload) disconnect(n *sysNode) {
	w.mu.Lock()
	for prefix, node := range w.live {
		if node == n {
			delete(w.live, prefix)
		}
	}
	w.mu.Unlock()
	for _, u := range w.users {
		if u.node == n {
			u.c.Close()
		}
	}
}

// reconnect connects and logs in n's users again, at its current address.
func (w *workload) reconnect(n *sysNode) {
	for _, u := range w.users {
		if u.node != n {
			continue
		}
		var l *pb.LoginResponse
		u.c, l = account(w.t, n.clientAddr, u.name, false)
		if got := l.User.GetUserId(); got != u.uid {
			w.t.Fatalf("login %s on the restarted %s: got user %d, want %d", u.name, n.id,
				got, u.uid)
		}
	}
}

// probe sends to every group through a user of the cut-off node n, one
// send after the other with a short timeout, until the deadline. Each
// must fail: n cannot reach a majority.
func (w *workload) probe(n *sysNode, until time.Time) {
	var u *sysUser
	for _, o := range w.users {
		if o.node == n {
			u = o
			break
		}
	}
	var wg sync.WaitGroup
	for _, gid := range w.gids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := fmt.Sprintf("probe-%s-g%d", u.name, gid)
			for i := 0; i == 0 || time.Now().Before(until); i++ {
				s := w.send(u, u.c, gid, fmt.Sprintf("%s-%d", stream, i), stream,
					sysProbeTimeout)
				if s.acked {
					w.t.Errorf("%s, cut off, acknowledged probe %s at seq %d", n.id, s.id, s.seq)
				}
			}
		}()
	}
	wg.Wait()
}

// stopSenders stops every sender goroutine and waits for them.
func (w *workload) stopSenders() {
	close(w.stop)
	w.wg.Wait()
}

// checkErrors fails the test if a send failed otherwise than by the
// cluster being unavailable for it: while nodes fail, a client must learn
// that it may retry (UNAVAILABLE) or that the outcome is unknown (TIMEOUT,
// or no answer at all). seqOf gives where each send landed.
func (w *workload) checkErrors(seqOf map[string]uint64) {
	w.t.Helper()
	var odd []string
	for _, s := range w.sends {
		if s.err == nil || unavailable(s.err) {
			continue
		}
		fate := "absent"
		if seq, ok := seqOf[s.id]; ok {
			fate = fmt.Sprintf("stored at seq %d", seq)
		}
		odd = append(odd, fmt.Sprintf("send %s through %s, answered at %s: %v; %s",
			s.id, s.node.id, s.end.UTC().Format("15:04:05.000"), s.err, fate))
	}
	if len(odd) > 0 {
		w.t.Errorf("got %d sends failing otherwise than by unavailability, want none; "+
			"the first ones:\n%s", len(odd), strings.Join(odd[:min(len(odd), 10)], "\n"))
	}
}

// checkWindow fails the test if a send made after from was acknowledged
// before to, on any node.
func (w *workload) checkWindow(what string, from, to time.Time) {
	w.t.Helper()
	made := 0
	for _, s := range w.sends {
		if s.start.Before(from) || s.end.After(to) {
			continue
		}
		made++
		if s.acked {
			w.t.Errorf("%s: %s acknowledged send %s at seq %d", what, s.node.id, s.id, s.seq)
		}
	}
	if made == 0 {
		w.t.Errorf("%s: got no send made and answered, want some", what)
	}
}

func (w *workload) acked() int {
	n := 0
	for _, s := range w.sends {
		if s.acked {
			n++
		}
	}
	return n
}

// verify waits until every node has the same last seq in every group,
// reads every group from every node and checks the histories: identical
// on all nodes, seqs from 1 without a gap, nothing that was never sent,
// no client message ID twice, every acknowledged send at the seq it was
// acknowledged with, and each sender's acknowledged sends in the order it
// made them. A send that was not acknowledged may be present once or
// absent. It returns the seq of each client message ID in the histories.
func (w *workload) verify() map[string]uint64 {
	w.t.Helper()
	var readers []*sysUser
	for _, n := range w.nodes {
		for _, u := range w.users {
			if u.node == n {
				readers = append(readers, u)
				break
			}
		}
	}
	w.waitConverged(readers)

	l := &ledger{byID: make(map[string]*sendRecord)}
	for _, s := range w.sends {
		l.byID[s.id] = s.sendRecord
	}
	seqOf := make(map[string]uint64)
	total := 0
	for _, gid := range w.gids {
		want, _ := readGroup(w.t, readers[0].c, gid)
		for _, u := range readers[1:] {
			got, _ := readGroup(w.t, u.c, gid)
			compareHistories(w.t, gid, readers[0].node, want, u.node, got)
		}
		l.checkGroup(w.t, gid, want, seqOf)
		total += len(want)
	}
	w.checkAcked(seqOf)
	w.checkOrder()
	w.t.Logf("%d messages in %d groups, identical on %d nodes", total, len(w.gids),
		len(readers))
	return seqOf
}

// waitConverged polls until every reader's node reports the same last seq
// for every group.
func (w *workload) waitConverged(readers []*sysUser) {
	w.t.Helper()
	deadline := time.Now().Add(sysWait)
	for {
		last, err := w.lastSeqs(readers)
		if err == nil && converged(last) {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("nodes did not converge within %v: last seqs %v (node by group), "+
				"last error %v", sysWait, last, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lastSeqs returns each reader's last seq of each group.
func (w *workload) lastSeqs(readers []*sysUser) ([][]uint64, error) {
	out := make([][]uint64, len(readers))
	for i, u := range readers {
		for _, gid := range w.gids {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			p, err := u.c.History(ctx, gid, 0, 1)
			cancel()
			if err != nil {
				return out, fmt.Errorf("history of group %d on %s: %w", gid, u.node.id, err)
			}
			out[i] = append(out[i], p.LastSeq)
		}
	}
	return out, nil
}

func converged(last [][]uint64) bool {
	for _, row := range last[1:] {
		for g := range row {
			if row[g] != last[0][g] {
				return false
			}
		}
	}
	return true
}

// compareHistories fails the test unless node b's history of group gid is
// node a's.
func compareHistories(t *testing.T, gid uint64, a *sysNode, want []*pb.ChatMessage,
	b *sysNode, got []*pb.ChatMessage) {
	t.Helper()
	if equalAll(got, want) {
		return
	}
	for i := range min(len(got), len(want)) {
		if !equalAll(got[i:i+1], want[i:i+1]) {
			t.Errorf("group %d: got %v at position %d on %s, want %v as on %s",
				gid, got[i], i, b.id, want[i], a.id)
			return
		}
	}
	t.Errorf("group %d: got %d messages on %s, want %d as on %s",
		gid, len(got), b.id, len(want), a.id)
}

// checkAcked fails the test unless every acknowledged send is at its seq,
// given the seq of each client message ID in the histories.
func (w *workload) checkAcked(seqOf map[string]uint64) {
	w.t.Helper()
	var acked, present, absent int
	for _, s := range w.sends {
		seq, ok := seqOf[s.id]
		switch {
		case s.acked && seq != s.seq:
			w.t.Errorf("send %s through %s acknowledged at seq %d: got it at seq %d "+
				"(0: missing)", s.id, s.node.id, s.seq, seq)
		case s.acked:
			acked++
		case ok:
			present++
		default:
			absent++
		}
	}
	w.t.Logf("%d sends acknowledged; of the %d not acknowledged %d are present",
		acked, present+absent, present)
}

// checkOrder fails the test unless each sender's acknowledged sends have
// rising seqs: each was made after the one before was acknowledged.
func (w *workload) checkOrder() {
	w.t.Helper()
	for name, st := range w.streams {
		var prev *sysSend
		for _, s := range st {
			if !s.acked {
				continue
			}
			if prev != nil && s.seq <= prev.seq {
				w.t.Errorf("sender %s: got send %s at seq %d, not after %s at seq %d",
					name, s.id, s.seq, prev.id, prev.seq)
			}
			prev = s
		}
	}
}

// breakable is a cluster of schat processes or containers that a system
// test can kill a node of and start it again.
type breakable interface {
	busiest(nodes ...*sysNode) *sysNode
	waitReady(nodes ...*sysNode)
	waitCaughtUp(n *sysNode, others ...*sysNode)
	kill(n *sysNode)
	restart(n *sysNode)
}

// killBusiest kills the node of all that leads the most shards while w
// sends: its senders must see their sends fail, the others must go on
// taking writes. It returns the killed node and the survivors.
func killBusiest(t *testing.T, c breakable, w *workload, round int,
	all []*sysNode) (killed *sysNode, survivors []*sysNode) {
	t.Helper()
	killed = c.busiest(all...)
	survivors = without(all, killed)
	killAt := time.Now()
	c.kill(killed)
	w.waitFailed(killed, killAt, time.Now())
	w.waitAcks("the survivors take writes after the kill", killAt, sysProgress,
		survivors...)
	holdLoad(killAt)
	w.disconnect(killed)
	t.Logf("round %d: killed %s; the survivors took writes within %v", round, killed.id,
		time.Since(killAt).Round(time.Millisecond))
	return killed, survivors
}

// restartKilled starts killed again on its data: it must catch up with
// the survivors and take writes from its own senders again.
func restartKilled(t *testing.T, c breakable, w *workload, round int, killed *sysNode,
	all, survivors []*sysNode) {
	t.Helper()
	restartAt := time.Now()
	c.restart(killed)
	c.waitReady(all...)
	c.waitCaughtUp(killed, survivors...)
	w.reconnect(killed)
	w.startSenders(killed)
	w.waitAcks("the restarted node takes writes", restartAt, sysProgress, killed)
	t.Logf("round %d: restarted %s; it took writes within %v", round, killed.id,
		time.Since(restartAt).Round(time.Millisecond))
}
