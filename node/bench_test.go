package node

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// BenchmarkNode_DurableSend measures acknowledged sends through a real node
// over TCP: 16 clients in 16 groups, each keeping 32 sends in flight. Every
// acknowledged send is committed to the fsynced raft log and applied.
func BenchmarkNode_DurableSend(b *testing.B) {
	for _, shards := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("shards=%d", shards), func(b *testing.B) {
			cfg := testConfig(b)
			cfg.Shards = shards
			benchSend(b, startNode(b, cfg), 16, 32)
		})
	}
}

// BenchmarkCluster_DurableSend is the same load on a three-node cluster in
// this process, clients spread over the nodes, for several shard counts:
// it shows whether leading shards on every node pays off on this machine.
func BenchmarkCluster_DurableSend(b *testing.B) {
	for _, shards := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprintf("shards=%d", shards), func(b *testing.B) {
			c := newClusterWith(b, 3, func(cfg *Config) { cfg.Shards = shards })
			for _, n := range c.nodes {
				n.rebalance()
			}
			addrs := make([]string, 3)
			for i, n := range c.nodes {
				addrs[i] = n.ClientAddr()
			}
			benchSendAt(b, addrs, 16, 32)
		})
	}
}

func benchSend(b *testing.B, n *Node, clients, inflight int) {
	benchSendAt(b, []string{n.ClientAddr()}, clients, inflight)
}

// benchSendAt runs the send load with clients spread over addrs.
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
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N/(clients*inflight) + 1
	for i := range conns {
		for j := 0; j < inflight; j++ {
			wg.Add(1)
			go func(c *transport.Client, gid uint64) {
				defer wg.Done()
				for k := 0; k < per; k++ {
					if _, err := c.Send(ctx, gid, text, ""); err != nil {
						b.Error(err)
						return
					}
				}
			}(conns[i], gids[i])
		}
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(per*clients*inflight)/b.Elapsed().Seconds(), "sends/s")
}

// drain discards a client's events, as a real client consumes them.
func drain(c *transport.Client) {
	for range c.Events() {
	}
}
