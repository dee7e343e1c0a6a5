package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Result is one scenario's figures; its JSON form is what --json prints.
// Latencies are in milliseconds, memory in bytes; a figure a scenario does
// not measure is left out of the JSON.
type Result struct {
	Scenario string `json:"scenario"`

	Ops              int64   `json:"ops"`
	OpsPerSec        float64 `json:"ops_per_sec"`
	Deliveries       int64   `json:"deliveries,omitempty"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec,omitempty"`
	ElapsedSec       float64 `json:"elapsed_sec"`
	Errors           int64   `json:"errors"`

	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`

	// RSSBytes and HeapBytes are the servers' resident memory and Go heap
	// in use (summed over the nodes) at the end of the scenario, or at its
	// peak where PeakRSSBytes and PeakHeapBytes are given (sync, sampled
	// every 50 ms).
	RSSBytes        int64 `json:"rss_bytes"`
	HeapBytes       int64 `json:"heap_bytes,omitempty"`
	RSSBeforeBytes  int64 `json:"rss_before_bytes,omitempty"`
	PeakRSSBytes    int64 `json:"peak_rss_bytes,omitempty"`
	HeapBeforeBytes int64 `json:"heap_before_bytes,omitempty"`
	PeakHeapBytes   int64 `json:"peak_heap_bytes,omitempty"`

	// Connections: server memory per idle connection.
	RSSPerConnBytes   float64 `json:"rss_per_conn_bytes,omitempty"`
	HeapPerConnBytes  float64 `json:"heap_per_conn_bytes,omitempty"`
	StackPerConnBytes float64 `json:"stack_per_conn_bytes,omitempty"`

	// Sync: from dialling to the first page, and to the last.
	FirstPageMs float64 `json:"first_page_ms,omitempty"`
	AllMs       float64 `json:"all_ms,omitempty"`

	// Ceiling: the data disk's fsync rate.
	FsyncsPerSec float64 `json:"fsyncs_per_sec,omitempty"`

	// Latency: the 99th percentile of how late sends left their schedule.
	// Well above zero, the load generator (or the server's back pressure)
	// held sends back, and the latency figures include that wait.
	SendLagP99Ms float64 `json:"send_lag_p99_ms,omitempty"`

	// CeilingRatio is OpsPerSec over the ceiling's applies per second, when
	// the ceiling ran in the same run and the ratio means something.
	CeilingRatio float64 `json:"ceiling_ratio,omitempty"`

	// OneNodeRatio is, for send and fanout on a cluster of several nodes,
	// the headline figure (sends, deliveries per second) over a single
	// node's in the same run (RunSizes).
	OneNodeRatio float64 `json:"one_node_ratio,omitempty"`

	// Params are the settings the scenario ran with.
	Params map[string]any `json:"params"`
}

// setLatency copies the percentiles of h, recorded in microseconds.
func (r *Result) setLatency(h *hdrhistogram.Histogram) {
	ms := func(q float64) float64 { return float64(h.ValueAtQuantile(q)) / 1000 }
	r.P50Ms, r.P90Ms, r.P99Ms, r.P999Ms = ms(50), ms(90), ms(99), ms(99.9)
	r.MaxMs = float64(h.Max()) / 1000
}

// setRate fills the counts and rates of m over elapsed.
func (r *Result) setRate(m *meter, elapsed time.Duration) {
	r.Ops, r.Deliveries, r.Errors = m.ops.Load(), m.deliveries.Load(), m.errors.Load()
	r.ElapsedSec = elapsed.Seconds()
	if elapsed > 0 {
		r.OpsPerSec = float64(r.Ops) / elapsed.Seconds()
		r.DeliveriesPerSec = float64(r.Deliveries) / elapsed.Seconds()
	}
}

// Summary writes the human summary of results.
func Summary(w io.Writer, results []Result) {
	for _, r := range results {
		fmt.Fprintf(w, "%s%s: %s\n", r.Scenario, nodes(r), headline(r))
		fmt.Fprintf(w, "  latency ms: p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f\n",
			r.P50Ms, r.P90Ms, r.P99Ms, r.P999Ms, r.MaxMs)
		fmt.Fprintf(w, "  server rss %s  heap %s  errors %d  elapsed %.1fs\n",
			mib(float64(r.RSSBytes)), mib(float64(r.HeapBytes)), r.Errors, r.ElapsedSec)
		fmt.Fprintf(w, "  params: %s\n", params(r.Params))
	}
}

// headline is a scenario's main figure in words.
func headline(r Result) string {
	var b strings.Builder
	switch r.Scenario {
	case Ceiling:
		fmt.Fprintf(&b, "%.0f entries/s through raft and bbolt, one message each "+
			"(%v commands/s batched as a node batches); disk %.0f fsyncs/s",
			r.OpsPerSec, r.Params["batched_ops_per_sec"], r.FsyncsPerSec)
	case Send:
		fmt.Fprintf(&b, "%.0f acknowledged sends/s", r.OpsPerSec)
	case Latency:
		fmt.Fprintf(&b, "%.0f sends/s at a fixed rate, %.0f deliveries/s; send lag p99 %.2f ms",
			r.OpsPerSec, r.DeliveriesPerSec, r.SendLagP99Ms)
	case Fanout:
		fmt.Fprintf(&b, "%.0f deliveries/s (%.0f messages/s)", r.DeliveriesPerSec, r.OpsPerSec)
	case Connections:
		fmt.Fprintf(&b, "%d idle connections: %s RSS, %s heap, %s stacks per connection",
			r.Ops, kib(r.RSSPerConnBytes), kib(r.HeapPerConnBytes), kib(r.StackPerConnBytes))
	case SyncCatchUp:
		fmt.Fprintf(&b, "%d messages: first page %.1f ms, all %.0f ms; rss %s before, %s peak; "+
			"heap %s before, %s peak", r.Ops, r.FirstPageMs, r.AllMs,
			mib(float64(r.RSSBeforeBytes)), mib(float64(r.PeakRSSBytes)),
			mib(float64(r.HeapBeforeBytes)), mib(float64(r.PeakHeapBytes)))
	}
	if r.CeilingRatio > 0 {
		fmt.Fprintf(&b, "  (%.2f of the ceiling)", r.CeilingRatio)
	}
	if r.OneNodeRatio > 0 {
		fmt.Fprintf(&b, "  (%.2f of one node)", r.OneNodeRatio)
	}
	return b.String()
}

// nodes names the cluster size a result was measured on, if several.
func nodes(r Result) string {
	if n, _ := r.Params["servers"].(int); n > 1 {
		return fmt.Sprintf(" (%d nodes)", n)
	}
	return ""
}

func mib(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }
func kib(v float64) string { return fmt.Sprintf("%.1f KiB", v/(1<<10)) }

func params(p map[string]any) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(p)) {
		parts = append(parts, fmt.Sprintf("%s=%v", k, p[k]))
	}
	return strings.Join(parts, " ")
}

// meter counts a scenario's progress; every goroutine of the scenario adds
// to it and the progress line reads it.
type meter struct {
	ops        atomic.Int64
	deliveries atomic.Int64
	errors     atomic.Int64
}

// latencies is a histogram of microseconds that many goroutines record
// into. It is striped so that they rarely wait for each other: a recorder
// picks a stripe by its own index.
type latencies struct {
	stripes [16]struct {
		mu sync.Mutex
		h  *hdrhistogram.Histogram
	}
}

// maxLatency is the largest latency recorded; longer ones are clamped.
const maxLatency = time.Minute

func newLatencies() *latencies {
	l := &latencies{}
	for i := range l.stripes {
		l.stripes[i].h = hdrhistogram.New(1, maxLatency.Microseconds(), 3)
	}
	return l
}

// record adds d on stripe i (any number; it is reduced).
func (l *latencies) record(i int, d time.Duration) {
	us := min(max(d.Microseconds(), 1), maxLatency.Microseconds())
	s := &l.stripes[i%len(l.stripes)]
	s.mu.Lock()
	s.h.RecordValue(us)
	s.mu.Unlock()
}

// merged returns one histogram of everything recorded.
func (l *latencies) merged() *hdrhistogram.Histogram {
	out := hdrhistogram.New(1, maxLatency.Microseconds(), 3)
	for i := range l.stripes {
		s := &l.stripes[i]
		s.mu.Lock()
		out.Merge(s.h)
		s.mu.Unlock()
	}
	return out
}
