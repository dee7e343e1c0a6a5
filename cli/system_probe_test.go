package main

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sysNode is one node of a system test's cluster: a `schat serve`
// process or a container running one.
type sysNode struct {
	id string // node1, node2, ...

	// Addresses on 127.0.0.1. A container's change when it starts again.
	clientAddr string
	httpAddr   string

	// Of a container.
	container string
	alias     string // its name on the cluster network
	ip        string // its address on the cluster network
	created   bool   // the container exists

	// Of a process.
	srv  *testServer
	opts serverOptions
}

// nodeProbe watches nodes through their HTTP ports: readiness, and the
// per-shard series of /metrics.
type nodeProbe struct {
	t    testing.TB
	http *http.Client
}

func newNodeProbe(t testing.TB) nodeProbe {
	return nodeProbe{t: t, http: &http.Client{Timeout: 2 * time.Second}}
}

// waitReady polls each node's /readyz until it answers 200.
func (p *nodeProbe) waitReady(nodes ...*sysNode) {
	p.t.Helper()
	deadline := time.Now().Add(sysWait)
	for _, n := range nodes {
		for !p.ready(n) {
			if time.Now().After(deadline) {
				p.t.Fatalf("%s not ready within %v", n.id, sysWait)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func (p *nodeProbe) ready(n *sysNode) bool {
	resp, err := p.http.Get("http://" + n.httpAddr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// shardMetric returns the values of a per-shard series on n's /metrics,
// by shard label.
func (p *nodeProbe) shardMetric(n *sysNode, name string) (map[string]float64, error) {
	resp, err := p.http.Get("http://" + n.httpAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name+`{shard="`)
		if !ok {
			continue
		}
		shard, value, _ := strings.Cut(rest, `"} `)
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fmt.Errorf("metrics of %s: %q: %w", n.id, sc.Text(), err)
		}
		out[shard] = v
	}
	return out, sc.Err()
}

// leads returns how many shards n leads; 0 if it does not answer.
func (p *nodeProbe) leads(n *sysNode) int {
	led, _ := p.shardMetric(n, "schat_shard_is_leader")
	count := 0
	for _, v := range led {
		if v == 1 {
			count++
		}
	}
	return count
}

// waitCaughtUp waits until n has applied, in every shard, as much as the
// most advanced of others had when the wait began.
func (p *nodeProbe) waitCaughtUp(n *sysNode, others ...*sysNode) {
	p.t.Helper()
	want := make(map[string]float64)
	for _, o := range others {
		applied, err := p.shardMetric(o, "schat_shard_applied_index")
		if err != nil {
			p.t.Fatal(err)
		}
		for shard, index := range applied {
			want[shard] = max(want[shard], index)
		}
	}
	deadline := time.Now().Add(sysWait)
	for {
		got, err := p.shardMetric(n, "schat_shard_applied_index")
		if err == nil && caughtUp(got, want) {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s did not catch up within %v: applied %v, want at least %v (%v)",
				n.id, sysWait, got, want, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func caughtUp(got, want map[string]float64) bool {
	for shard, index := range want {
		if got[shard] < index {
			return false
		}
	}
	return len(want) > 0
}

// busiest returns the node among nodes that leads the most shards.
func (p *nodeProbe) busiest(nodes ...*sysNode) *sysNode {
	best, most := nodes[0], -1
	for _, n := range nodes {
		if l := p.leads(n); l > most {
			best, most = n, l
		}
	}
	return best
}
