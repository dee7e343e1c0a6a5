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
}

// metricNames maps the series read to the fields they fill.
var metricNames = map[string]func(*serverStats, int64){
	"process_resident_memory_bytes": func(s *serverStats, v int64) { s.rss += v },
	"go_memstats_heap_inuse_bytes":  func(s *serverStats, v int64) { s.heap += v },
	"go_memstats_stack_inuse_bytes": func(s *serverStats, v int64) { s.stack += v },
	"schat_online_sessions":         func(s *serverStats, v int64) { s.sessions += v },
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
		name, val, ok := strings.Cut(sc.Text(), " ")
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

// peakRSS samples the servers' resident memory until stop is closed and
// returns the largest sample.
func (r *runner) peakRSS(ctx context.Context, stop <-chan struct{}) int64 {
	var peak int64
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if st, err := r.stats(ctx); err == nil {
			peak = max(peak, st.rss)
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
