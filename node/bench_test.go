package node

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// benchShards are the shard counts the send benchmarks compare.
var benchShards = []int{1, 2, 4, 8}

// BenchmarkNode_DurableSend measures acknowledged sends through a real node
// over TCP: 16 clients in 16 groups, each keeping 32 sends in flight. Every
// acknowledged send is committed to the fsynced raft log and applied. It
// reports sends/s and the latency of each send under that load.
func BenchmarkNode_DurableSend(b *testing.B) {
	benchShardCounts(b, benchNode, 16, 32)
}

// BenchmarkNode_DurableSendPeak is BenchmarkNode_DurableSend with four
// times the sends in flight (16 clients × 128): enough to fill a shard's
// entries at every shard count measured, so that it shows the node's peak
// rather than the rate one load level reaches.
func BenchmarkNode_DurableSendPeak(b *testing.B) {
	benchShardCounts(b, benchNode, 16, 128)
}

// BenchmarkCluster_DurableSend is the same load on a three-node cluster in
// this process, clients spread over the nodes, for several shard counts:
// it shows whether leading shards on every node pays off on this machine.
func BenchmarkCluster_DurableSend(b *testing.B) {
	benchShardCounts(b, benchCluster, 16, 32)
}

// BenchmarkNode_SendLatency measures the latency of acknowledged sends
// through a real node when it is not loaded: 4 clients in 4 groups, one
// send in flight each.
func BenchmarkNode_SendLatency(b *testing.B) {
	benchShardCounts(b, benchNode, 4, 1)
}

// BenchmarkCluster_SendLatency is BenchmarkNode_SendLatency on a
// three-node cluster: every send is replicated to a majority before it is
// acknowledged, and a send received by a follower is forwarded.
func BenchmarkCluster_SendLatency(b *testing.B) {
	benchShardCounts(b, benchCluster, 4, 1)
}

// benchShardCounts runs the send load on what start makes for each shard
// count of benchShards.
func benchShardCounts(b *testing.B, start func(*testing.B, int) []string, clients, inflight int) {
	for _, shards := range benchShards {
		b.Run(fmt.Sprintf("shards=%d", shards), func(b *testing.B) {
			benchSendAt(b, start(b, shards), clients, inflight)
		})
	}
}

// benchNode starts a node with shards group shards and returns its client
// address.
func benchNode(b *testing.B, shards int) []string {
	cfg := testConfig(b)
	cfg.Shards = shards
	return []string{startNode(b, cfg).ClientAddr()}
}

// benchCluster starts a three-node cluster with shards group shards and
// the leaderships spread, and returns the nodes' client addresses.
func benchCluster(b *testing.B, shards int) []string {
	c := newClusterWith(b, 3, func(cfg *Config) { cfg.Shards = shards })
	for _, n := range c.nodes {
		n.rebalance()
	}
	addrs := make([]string, 3)
	for i, n := range c.nodes {
		addrs[i] = n.ClientAddr()
	}
	return addrs
}

// benchSendAt runs the send load with clients spread over addrs, each in
// a group of its own with inflight sends at a time, and reports sends/s
// and the 50th, 90th, 99th and 99.9th percentiles of the send latency.
func benchSendAt(b *testing.B, addrs []string, clients, inflight int) {
	ctx := context.Background()
	conns := make([]*transport.Client, clients)
	gids := make([]uint64, clients)
	for i := range conns {
		c, _ := user(b, addrs[i%len(addrs)], false, fmt.Sprintf("bench%d", i))
		g := must(c.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "g"}))(b)
		conns[i], gids[i] = c, g.GroupId
		go drain(c)
	}
	text := strings.Repeat("x", 200)
	b.SetBytes(int64(len(text)))
	per := b.N/(clients*inflight) + 1
	lat := make([][]time.Duration, clients*inflight)
	b.ResetTimer()
	var wg sync.WaitGroup
	for i := range lat {
		lat[i] = make([]time.Duration, 0, per)
		wg.Add(1)
		go func(c *transport.Client, gid uint64, out *[]time.Duration) {
			defer wg.Done()
			for k := 0; k < per; k++ {
				start := time.Now()
				if _, err := c.Send(ctx, gid, text, ""); err != nil {
					b.Error(err)
					return
				}
				*out = append(*out, time.Since(start))
			}
		}(conns[i%clients], gids[i%clients], &lat[i])
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(per*clients*inflight)/b.Elapsed().Seconds(), "sends/s")
	reportLatency(b, slices.Concat(lat...))
}

// reportLatency reports percentiles of lat in milliseconds.
func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	for _, p := range []struct {
		name string
		q    float64
	}{{"p50", 0.50}, {"p90", 0.90}, {"p99", 0.99}, {"p99.9", 0.999}} {
		d := lat[min(len(lat)-1, int(p.q*float64(len(lat))))]
		b.ReportMetric(float64(d)/float64(time.Millisecond), p.name+"-ms")
	}
}

// drain discards a client's events, as a real client consumes them.
func drain(c *transport.Client) {
	for range c.Events() {
	}
}
