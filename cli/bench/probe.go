package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// serverStats are figures read from the servers' /metrics, summed over
// the nodes.
type serverStats struct {
	rss      int64 // process_resident_memory_bytes
	heap     int64 // go_memstats_heap_inuse_bytes
	stack    int64 // go_memstats_stack_inuse_bytes
	sessions int64 // schat_online_sessions
	entries  int64 // schat_shard_entries_total, all shards
	commands int64 // schat_shard_commands_total, all shards
	shards   int64 // series of schat_shard_is_leader: the shards of every node
}

// metricNames maps the series read to the fields they fill.
var metricNames = map[string]func(*serverStats, int64){
	"process_resident_memory_bytes": func(s *serverStats, v int64) { s.rss += v },
	"go_memstats_heap_inuse_bytes":  func(s *serverStats, v int64) { s.heap += v },
	"go_memstats_stack_inuse_bytes": func(s *serverStats, v int64) { s.stack += v },
	"schat_online_sessions":         func(s *serverStats, v int64) { s.sessions += v },
	"schat_shard_entries_total":     func(s *serverStats, v int64) { s.entries += v },
	"schat_shard_commands_total":    func(s *serverStats, v int64) { s.commands += v },
	"schat_shard_is_leader":         func(s *serverStats, _ int64) { s.shards++ },
}

// stats reads every server's /metrics. Without HTTP addresses it returns
// zeroes.
func (r *runner) stats(ctx context.Context) (serverStats, error) {
	var st serverStats
	for _, addr := range r.cfg.HTTPAddrs {
		if err := r.scrape(ctx, addr, &st); err != nil {
			return st, err
		}
	}
	return st, nil
}

// scrape adds one server's figures to st.
func (r *runner) scrape(ctx context.Context, addr string, st *serverStats) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("bench: metrics of %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("bench: metrics of %s: %s", addr, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		series, val, ok := strings.Cut(sc.Text(), " ")
		name, _, _ := strings.Cut(series, "{") // the labels are summed over
		add := metricNames[name]
		if !ok || add == nil {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			add(st, int64(v))
		}
	}
	return sc.Err()
}

// groupShards is how many group shards each server has: its shards less
// the meta shard.
func (st serverStats) groupShards(servers int) int64 {
	if servers == 0 || st.shards == 0 {
		return 0
	}
	return st.shards/int64(servers) - 1
}

// batching reads the servers' counts of raft entries and commands, and
// returns a function that records in params how many commands the entries
// formed since held on average: the batching the ceiling is compared on.
func (r *runner) batching(ctx context.Context, params map[string]any) func() {
	before, err := r.stats(ctx)
	return func() {
		after, err2 := r.stats(ctx)
		if err != nil || err2 != nil || after.entries <= before.entries {
			return
		}
		params["commands_per_entry"] = round1(float64(after.commands-before.commands) /
			float64(after.entries-before.entries))
	}
}

// peaks samples the servers' resident memory and Go heap in use until
// stop is closed and returns the largest of each (their sums over the
// nodes, taken at each sample).
func (r *runner) peaks(ctx context.Context, stop <-chan struct{}) serverStats {
	var peak serverStats
	tick := time.NewTicker(peakInterval)
	defer tick.Stop()
	for {
		if st, err := r.stats(ctx); err == nil {
			peak.rss, peak.heap = max(peak.rss, st.rss), max(peak.heap, st.heap)
		}
		select {
		case <-stop:
			return peak
		case <-ctx.Done():
			return peak
		case <-tick.C:
		}
	}
}

// peakInterval is how often peaks samples: a peak shorter than it may be
// missed.
const peakInterval = 50 * time.Millisecond
