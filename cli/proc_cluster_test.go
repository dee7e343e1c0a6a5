package main

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// procCluster is a cluster of `schat serve` processes on 127.0.0.1,
// formed the way an operator forms one: every node started with the same
// --join list and --bootstrap-expect, in no particular order.
type procCluster struct {
	nodeProbe
	t      *testing.T
	secret string
	nodes  []*sysNode
}

// newProcCluster starts size nodes and waits until every one is ready.
// Only the node port is fixed, since the others know a node by it; the
// client and HTTP ports are read from each node's "ready" log line. extra
// flags go to every node.
func newProcCluster(t *testing.T, size int, extra ...string) *procCluster {
	t.Helper()
	secret := randomHex(t, 32)
	pc := &procCluster{nodeProbe: newNodeProbe(t), t: t, secret: secret}
	raftAddrs := make([]string, size)
	for i := range raftAddrs {
		raftAddrs[i] = freeAddr(t)
	}
	for i := range size {
		n := &sysNode{id: fmt.Sprintf("node%d", i+1)}
		n.opts = serverOptions{dataDir: filepath.Join(t.TempDir(), n.id),
			raftAddr: raftAddrs[i], extra: []string{
				"--node-id", n.id,
				"--join", strings.Join(append(raftAddrs[:i:i], raftAddrs[i+1:]...), ","),
				"--bootstrap-expect", strconv.Itoa(size),
				"--cluster-secret", secret,
				"--rate-per-minute", "1000000",
				"--argon2-memory-kib", "1024", "--argon2-time", "1",
			}}
		n.opts.extra = append(n.opts.extra, extra...)
		pc.nodes = append(pc.nodes, n)
	}
	t.Cleanup(pc.dumpLogsOnFailure)
	for _, n := range pc.nodes {
		n.srv = launchServer(t, n.opts)
	}
	for _, n := range pc.nodes {
		pc.started(n)
	}
	pc.waitReady(pc.nodes...)
	return pc
}

// started waits for n's "ready" line and takes its addresses from it.
func (pc *procCluster) started(n *sysNode) {
	pc.t.Helper()
	n.srv.waitReady(pc.t)
	n.clientAddr, n.httpAddr = n.srv.clientAddr, n.srv.httpAddr
}

// kill stops n's process with SIGKILL.
func (pc *procCluster) kill(n *sysNode) { n.srv.kill(pc.t) }

// restart starts n again on its data directory with the command line it
// was first started with.
func (pc *procCluster) restart(n *sysNode) {
	pc.t.Helper()
	n.srv = launchServer(pc.t, n.opts)
	pc.started(n)
}

// dumpLogsOnFailure puts the end of each node's log into the test log if
// the test failed.
func (pc *procCluster) dumpLogsOnFailure() {
	if !pc.t.Failed() {
		return
	}
	for _, n := range pc.nodes {
		if n.srv == nil {
			continue
		}
		lines := strings.Split(n.srv.logs.String(), "\n")
		pc.t.Logf("log of %s, last 200 lines:\n%s", n.id,
			strings.Join(lines[max(0, len(lines)-200):], "\n"))
	}
}

// TestServe_ThreeNodeKill9 runs three `schat serve` processes as one
// cluster, with users on every node sending to several groups at once,
// and kills the node that leads the most shards with SIGKILL while they
// send. The two others must keep acknowledging writes; the killed node,
// started again with the same command line on its data, must neither
// re-join nor bootstrap, but catch up and take writes. With
// -cluster.rounds, the kill and restart repeat. Then all three must hold
// the same history of every group: seqs from 1 without a gap, every
// acknowledged send exactly once at the seq it was acknowledged with,
// each sender's sends in the order it made them, and nothing that was
// never sent.
func TestServe_ThreeNodeKill9(t *testing.T) {
	began := time.Now()
	pc := newProcCluster(t, 3)
	t.Logf("cluster ready after %v", time.Since(began).Round(time.Millisecond))
	w := newWorkload(t, pc.nodes)
	all := pc.nodes
	w.startSenders(all...)
	w.waitAcks("every node takes writes", time.Now(), sysWarmup, all...)

	for round := 1; round <= *clusterRounds; round++ {
		killed, survivors := killBusiest(t, pc, w, round, all)
		restartKilled(t, pc, w, round, killed, all, survivors)
	}

	w.stopSenders()
	seqOf := w.verify()
	w.checkErrors(seqOf)
	t.Logf("%d sends, %d acknowledged; %v in all", len(w.sends), w.acked(),
		time.Since(began).Round(time.Millisecond))
}
