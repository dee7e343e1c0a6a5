package main

import (
	"testing"
	"time"
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
// With -cluster.rounds the four steps repeat, and -cluster.duration
// stretches the time after the kill and the cut. Then every node must
// hold the same history of every group: seqs from 1 without a gap, every
// acknowledged send exactly once at the seq it was acknowledged with, each
// sender's acknowledged sends in the order it made them, and nothing that
// was never sent.
func TestDocker_ThreeNodeCluster(t *testing.T) {
	began := time.Now()
	dc := newDockerCluster(t, 3)
	t.Logf("cluster ready after %v", time.Since(began).Round(time.Millisecond))
	w := newWorkload(t, dc.nodes)
	all := dc.nodes
	w.startSenders(all...)
	w.waitAcks("every node takes writes", time.Now(), sysWarmup, all...)

	var windows [][2]time.Time // while no node had a majority
	for round := 1; round <= *clusterRounds; round++ {
		windows = append(windows, dockerRound(t, dc, w, round))
	}

	w.stopSenders()
	for _, win := range windows {
		w.checkWindow("while no node had a majority", win[0], win[1])
	}
	seqOf := w.verify()
	w.checkErrors(seqOf)
	t.Logf("%d sends, %d acknowledged; %v in all", len(w.sends), w.acked(),
		time.Since(began).Round(time.Millisecond))
}

// dockerRound runs steps 1 to 4 of TestDocker_ThreeNodeCluster once and
// returns the time from the cut to the reconnection.
func dockerRound(t *testing.T, dc *dockerCluster, w *workload, round int) [2]time.Time {
	all := dc.nodes

	// 1. Kill a node mid-stream.
	killed, survivors := killBusiest(t, dc, w, round, all)

	// 2. Cut off another; 3. reconnect it.
	cutOff := dc.busiest(survivors...)
	dc.cut(cutOff)
	cutAt := time.Now()
	w.probe(cutOff, cutAt.Add(max(dockerCutFor, *clusterDuration)))
	healAt := time.Now()
	dc.heal(cutOff)
	w.waitAcks("the survivors take writes after the reconnection", healAt, sysProgress,
		survivors...)
	t.Logf("round %d: cut %s off for %v; writes resumed within %v of reconnecting it",
		round, cutOff.id, healAt.Sub(cutAt).Round(time.Millisecond),
		time.Since(healAt).Round(time.Millisecond))

	// 4. Start the killed node again.
	restartKilled(t, dc, w, round, killed, all, survivors)
	return [2]time.Time{cutAt, healAt}
}
