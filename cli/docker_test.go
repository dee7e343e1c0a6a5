package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

const (
	// dockerGroups is how many groups the Docker test sends to; with the
	// default two group shards both take load.
	dockerGroups = 4
	// dockerUsersPerNode is how many users are connected to each node.
	dockerUsersPerNode = 2
	// dockerSendTimeout bounds one send of a sender goroutine.
	dockerSendTimeout = 2 * time.Second
	// dockerProbeTimeout bounds one send to a node that is cut off.
	dockerProbeTimeout = 1500 * time.Millisecond
	// dockerCutFor is how long a node stays cut off from the others.
	dockerCutFor = 4 * time.Second
	// dockerWarmup is how many sends each node acknowledges before the
	// first node is killed.
	dockerWarmup = 100
	// dockerProgress is how many acknowledged sends show that a node takes
	// writes.
	dockerProgress = 10
)

// TestDocker_ThreeNodeCluster runs three containers of the schat image as
// one cluster, with users on every node sending to several groups at
// once, and breaks it while they send:
//
//  1. kill -9 the node that leads the most shards: its clients see errors,
//     and the two others keep acknowledging writes;
//  2. cut the busier survivor off the cluster network for a few seconds:
//     with one node dead and one cut off no node has a majority, so no
//     send made meanwhile may be acknowledged, neither by the cut-off node
//     (probed with short timeouts) nor by the other;
//  3. reconnect it, and writes are acknowledged again;
//  4. start the killed container again on its data: it becomes ready and
//     takes writes.
//
// Then every node must hold the same history of every group: seqs from 1
// without a gap, every acknowledged send exactly once at the seq it was
// acknowledged with, each sender's acknowledged sends in the order it
// made them, and nothing that was never sent.
func TestDocker_ThreeNodeCluster(t *testing.T) {
	began := time.Now()
	dc := newDockerCluster(t, 3)
	t.Logf("cluster ready after %v", time.Since(began).Round(time.Millisecond))
	w := newDockerWorkload(t, dc)
	all := dc.nodes
	w.startSenders(all...)
	w.waitAcks("every node takes writes", time.Now(), dockerWarmup, all...)

	// 1. Kill a node mid-stream.
	killed := dc.busiest(all...)
	survivors := without(all, killed)
	killAt := time.Now()
	dc.kill(killed)
	w.waitFailed(killed, killAt, time.Now())
	w.waitAcks("the survivors take writes after the kill", killAt, dockerProgress,
		survivors...)
	w.disconnect(killed)
	t.Logf("killed %s; the survivors took writes within %v", killed.id,
		time.Since(killAt).Round(time.Millisecond))

	// 2. Cut off another; 3. reconnect it.
	cutOff := dc.busiest(survivors...)
	dc.cut(cutOff)
	cutAt := time.Now()
	w.probe(cutOff, cutAt.Add(dockerCutFor))
	healAt := time.Now()
	dc.heal(cutOff)
	w.waitAcks("the survivors take writes after the reconnection", healAt, dockerProgress,
		survivors...)
	t.Logf("cut %s off for %v; writes resumed within %v of reconnecting it", cutOff.id,
		healAt.Sub(cutAt).Round(time.Millisecond), time.Since(healAt).Round(time.Millisecond))

	// 4. Start the killed node again.
	restartAt := time.Now()
	dc.restart(killed)
	dc.waitReady(all...)
	dc.waitCaughtUp(killed, survivors...)
	w.reconnect(killed)
	w.startSenders(killed)
	w.waitAcks("the restarted node takes writes", restartAt, dockerProgress, killed)
	t.Logf("restarted %s; it took writes within %v", killed.id,
		time.Since(restartAt).Round(time.Millisecond))

	w.stopSenders()
	w.checkWindow("while no node had a majority", cutAt, healAt)
	seqOf := w.verify()
	w.checkErrors(seqOf)
	t.Logf("%d sends, %d acknowledged; %v in all", len(w.sends), w.acked(),
		time.Since(began).Round(time.Millisecond))
}

func without(nodes []*dockerNode, n *dockerNode) []*dockerNode {
	var out []*dockerNode
	for _, o := range nodes {
		if o != n {
			out = append(out, o)
		}
	}
	return out
}

// dockerUser is an account of the Docker test, connected to one node.
type dockerUser struct {
	name string
	uid  uint64
	node *dockerNode
	c    *transport.Client // replaced when the node comes back
}

// dockerSend is one send of the Docker test and what its sender learned.
type dockerSend struct {
	*sendRecord
	node       *dockerNode
	start, end time.Time
	err        error // why it failed, if it did
}

// dockerWorkload is the users and groups of the Docker test and the
// record of every send made.
type dockerWorkload struct {
	t     *testing.T
	dc    *dockerCluster
	users []*dockerUser
	gids  []uint64
	stop  chan struct{}
	wg    sync.WaitGroup
	round int

	mu      sync.Mutex
	sends   []*dockerSend
	streams map[string][]*dockerSend // each sender goroutine's sends, in order
}

// newDockerWorkload registers dockerUsersPerNode users on every node, has
// users on different nodes create the groups, and makes every user a
// member of every group.
func newDockerWorkload(t *testing.T, dc *dockerCluster) *dockerWorkload {
	w := &dockerWorkload{t: t, dc: dc, stop: make(chan struct{}),
		streams: make(map[string][]*dockerSend)}
	for k := range dockerUsersPerNode {
		for _, n := range dc.nodes {
			u := &dockerUser{name: fmt.Sprintf("%s-user%d", n.id, k), node: n}
			var l *pb.LoginResponse
			u.c, l = account(t, n.clientAddr, u.name, true)
			u.uid = l.User.GetUserId()
			w.users = append(w.users, u)
		}
	}

	ctx := testCtx(t)
	for i := range dockerGroups {
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
func (w *dockerWorkload) startSenders(nodes ...*dockerNode) {
	w.round++
	for _, u := range w.users {
		if !contains(nodes, u.node) {
			continue
		}
		for _, gid := range w.gids {
			prefix := fmt.Sprintf("r%d-%s-g%d", w.round, u.name, gid)
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				w.sendLoop(u, u.c, gid, prefix)
			}()
		}
	}
}

func contains(nodes []*dockerNode, n *dockerNode) bool {
	for _, o := range nodes {
		if o == n {
			return true
		}
	}
	return false
}

// sendLoop sends to group gid through c, one send after the other, until
// the workload stops or c's connection ends. A send that fails is not
// retried; the next one has a new client message ID.
func (w *dockerWorkload) sendLoop(u *dockerUser, c *transport.Client, gid uint64,
	prefix string) {
	for i := 0; c.Err() == nil; i++ {
		select {
		case <-w.stop:
			return
		default:
		}
		s := w.send(u, c, gid, fmt.Sprintf("%s-%d", prefix, i), prefix, dockerSendTimeout)
		if s.acked {
			continue
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
func (w *dockerWorkload) send(u *dockerUser, c *transport.Client, gid uint64,
	id, stream string, timeout time.Duration) *dockerSend {
	s := &dockerSend{sendRecord: &sendRecord{gid: gid, sender: u.uid, id: id,
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
func (w *dockerWorkload) count(nodes []*dockerNode, since time.Time,
	match func(*dockerSend) bool) int {
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
func (w *dockerWorkload) waitAcks(what string, since time.Time, want int,
	nodes ...*dockerNode) {
	w.t.Helper()
	deadline := time.Now().Add(dockerWait)
	for _, n := range nodes {
		isAcked := func(s *dockerSend) bool { return s.acked }
		for w.count([]*dockerNode{n}, since, isAcked) < want {
			if time.Now().After(deadline) {
				w.t.Fatalf("%s: %s acknowledged %d sends within %v, want %d", what, n.id,
					w.count([]*dockerNode{n}, since, isAcked), dockerWait, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// waitFailed waits until every sender on n has seen a send fail after
// since, and fails the test if n acknowledged any send made after dead,
// when it was certainly gone.
func (w *dockerWorkload) waitFailed(n *dockerNode, since, dead time.Time) {
	w.t.Helper()
	deadline := time.Now().Add(dockerWait)
	for {
		waiting := w.sendersWithoutFailure(n, since)
		if waiting == 0 {
			break
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%d senders on the killed %s saw no failed send within %v",
				waiting, n.id, dockerWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
	acked := func(s *dockerSend) bool { return s.acked }
	if got := w.count([]*dockerNode{n}, dead, acked); got > 0 {
		w.t.Errorf("got %d sends acknowledged by %s after it was killed, want 0", got, n.id)
	}
}

// sendersWithoutFailure counts the senders on n none of whose sends
// answered after since has failed.
func (w *dockerWorkload) sendersWithoutFailure(n *dockerNode, since time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	waiting := 0
	for _, st := range w.streams {
		if st[0].node != n {
			continue
		}
		failed := false
		for _, s := range st {
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
func (w *dockerWorkload) disconnect(n *dockerNode) {
	for _, u := range w.users {
		if u.node == n {
			u.c.Close()
		}
	}
}

// reconnect connects and logs in n's users again, at its current address.
func (w *dockerWorkload) reconnect(n *dockerNode) {
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
func (w *dockerWorkload) probe(n *dockerNode, until time.Time) {
	var u *dockerUser
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
					dockerProbeTimeout)
				if s.acked {
					w.t.Errorf("%s, cut off, acknowledged probe %s at seq %d", n.id, s.id, s.seq)
				}
			}
		}()
	}
	wg.Wait()
}

// stopSenders stops every sender goroutine and waits for them.
func (w *dockerWorkload) stopSenders() {
	close(w.stop)
	w.wg.Wait()
}

// checkErrors fails the test if a send failed otherwise than by the
// cluster being unavailable for it: while nodes fail, a client must learn
// that it may retry (UNAVAILABLE) or that the outcome is unknown (TIMEOUT,
// or no answer at all). seqOf gives where each send landed.
func (w *dockerWorkload) checkErrors(seqOf map[string]uint64) {
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
func (w *dockerWorkload) checkWindow(what string, from, to time.Time) {
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

func (w *dockerWorkload) acked() int {
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
func (w *dockerWorkload) verify() map[string]uint64 {
	w.t.Helper()
	var readers []*dockerUser
	for _, n := range w.dc.nodes {
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
func (w *dockerWorkload) waitConverged(readers []*dockerUser) {
	w.t.Helper()
	deadline := time.Now().Add(dockerWait)
	for {
		last, err := w.lastSeqs(readers)
		if err == nil && converged(last) {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("nodes did not converge within %v: last seqs %v (node by group), "+
				"last error %v", dockerWait, last, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lastSeqs returns each reader's last seq of each group.
func (w *dockerWorkload) lastSeqs(readers []*dockerUser) ([][]uint64, error) {
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
func compareHistories(t *testing.T, gid uint64, a *dockerNode, want []*pb.ChatMessage,
	b *dockerNode, got []*pb.ChatMessage) {
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
func (w *dockerWorkload) checkAcked(seqOf map[string]uint64) {
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
func (w *dockerWorkload) checkOrder() {
	w.t.Helper()
	for name, st := range w.streams {
		var prev *dockerSend
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
