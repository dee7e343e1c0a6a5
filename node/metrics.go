package node

import (
	"strconv"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the node's Prometheus series. Each node has its own registry,
// so several nodes can run in one test process.
type metrics struct {
	reg      *prometheus.Registry
	conns    prometheus.Gauge
	requests *prometheus.CounterVec
	commit   prometheus.Histogram
}

func newMetrics(n *Node) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "schat_client_connections", Help: "Open client connections."}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "schat_requests_total", Help: "Client requests by type."}, []string{"type"}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "schat_commit_seconds", Help: "Time from proposing a command to its result.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
	}
	online := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "schat_online_sessions", Help: "Logged-in sessions on this node."},
		func() float64 { return float64(n.hub.online()) })
	m.reg.MustRegister(m.conns, m.requests, m.commit, online, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, sh := range n.shards {
		m.reg.MustRegister(shardGauge(sh, "schat_shard_applied_index",
			"Last raft index applied to the shard's state.", func() float64 {
				return float64(sh.fsm.AppliedIndex())
			}))
		m.reg.MustRegister(shardCounter(sh, "schat_shard_state_commits_total",
			"Transactions the shard's state file committed; applied batches share them.",
			func() float64 { return float64(sh.fsm.Commits()) }))
		m.reg.MustRegister(shardGauge(sh, "schat_shard_largest_apply_batch_bytes",
			"Entry bytes of the largest batch the shard's state machine has applied.",
			func() float64 { return float64(sh.fsm.LargestBatch()) }))
		m.reg.MustRegister(shardGauge(sh, "schat_shard_log_cache_bytes",
			"Bytes of raft log entries the shard keeps in memory.",
			func() float64 { return float64(sh.cache.cached()) }))
		m.reg.MustRegister(shardCounter(sh, "schat_shard_entries_total",
			"Raft entries this node's proposer formed for the shard.", func() float64 {
				return float64(sh.prop.entries.Load())
			}))
		m.reg.MustRegister(shardCounter(sh, "schat_shard_commands_total",
			"Commands in the raft entries this node's proposer formed for the shard.",
			func() float64 { return float64(sh.prop.commands.Load()) }))
		m.reg.MustRegister(shardGauge(sh, "schat_shard_is_leader",
			"1 when this node leads the shard.", func() float64 {
				if sh.raft.State() == raft.Leader {
					return 1
				}
				return 0
			}))
	}
	return m
}

func shardGauge(sh *shard, name, help string, fn func() float64) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help,
		ConstLabels: prometheus.Labels{"shard": shardLabel(sh.id)}}, fn)
}

func shardCounter(sh *shard, name, help string, fn func() float64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help,
		ConstLabels: prometheus.Labels{"shard": shardLabel(sh.id)}}, fn)
}

func shardLabel(id uint32) string {
	if id == 0 {
		return "meta"
	}
	return "group-" + strconv.FormatUint(uint64(id), 10)
}
