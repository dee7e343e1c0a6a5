package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// tinyBench are bench flags that make every scenario a matter of seconds.
var tinyBench = []string{"--duration", "300ms", "--clients", "4", "--groups", "2",
	"--in-flight", "4", "--rate", "200", "--members", "12", "--senders", "2",
	"--conns", "40", "--conn-users", "4", "--sync-groups", "3", "--unread", "25",
	"--writers", "8"}

// runBenchCmd runs `schat bench --json` with args and returns one decoded
// line per scenario; it fails the test if the command fails.
func runBenchCmd(t *testing.T, args ...string) []line {
	t.Helper()
	stdout, stderr, err := benchCmd(t, args...)
	if err != nil {
		t.Fatalf("schat bench %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err,
			stdout, stderr)
	}
	return parseLines(t, stdout)
}

// benchCmd runs `schat bench --json` at the tiny size with args.
func benchCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), processWait)
	defer cancel()
	full := append(append([]string{"bench", "--json", "--dir", t.TempDir()}, tinyBench...),
		args...)
	cmd := exec.CommandContext(ctx, schatBinary(t), full...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// checkBenchResult checks that a scenario's figures are sane: work done,
// no errors, percentiles in order, the servers' memory (the ceiling runs
// in the load generator) and the parameters reported. It asserts nothing
// about speed.
func checkBenchResult(t *testing.T, r line) {
	t.Helper()
	name := r.str("scenario")
	num := func(k string) float64 { f, _ := r[k].(float64); return f }
	if num("ops") <= 0 || num("ops_per_sec") <= 0 {
		t.Errorf("%s: ops %v, ops_per_sec %v; want both > 0", name, r["ops"], r["ops_per_sec"])
	}
	if num("errors") != 0 {
		t.Errorf("%s: errors %v, want 0", name, r["errors"])
	}
	ps := []float64{num("p50_ms"), num("p90_ms"), num("p99_ms"), num("p999_ms"), num("max_ms")}
	if ps[0] <= 0 || !slices.IsSorted(ps) {
		t.Errorf("%s: p50, p90, p99, p99.9, max = %v; want positive and ordered", name, ps)
	}
	if num("rss_bytes") <= 0 && name != "ceiling" {
		t.Errorf("%s: rss_bytes %v, want > 0", name, r["rss_bytes"])
	}
	if params, _ := r["params"].(map[string]any); len(params) == 0 {
		t.Errorf("%s: no params", name)
	}
}

// wantScenarios fails the test unless results are exactly names, in order.
func wantScenarios(t *testing.T, results []line, names ...string) {
	t.Helper()
	var got []string
	for _, r := range results {
		got = append(got, r.str("scenario"))
	}
	if !slices.Equal(got, names) {
		t.Fatalf("scenarios %v, want %v", got, names)
	}
}

func TestBench_AllScenarios(t *testing.T) {
	t.Parallel()
	profiles := t.TempDir()
	results := runBenchCmd(t, "--profile", profiles, "all")
	wantScenarios(t, results, "ceiling", "send", "latency", "fanout", "connections", "sync")
	for _, r := range results {
		checkBenchResult(t, r)
	}
	byName := map[string]line{}
	for _, r := range results {
		byName[r.str("scenario")] = r
	}
	num := func(s, k string) float64 { f, _ := byName[s][k].(float64); return f }
	checks := []struct {
		scenario, field string
	}{
		{"ceiling", "fsyncs_per_sec"},
		{"ceiling", "ops_per_sec"},
		{"send", "ceiling_ratio"},
		{"latency", "deliveries_per_sec"},
		{"latency", "send_lag_p99_ms"},
		{"fanout", "deliveries_per_sec"},
		{"sync", "first_page_ms"},
		{"sync", "all_ms"},
		{"sync", "peak_rss_bytes"},
		{"sync", "peak_heap_bytes"},
	}
	for _, c := range checks {
		if num(c.scenario, c.field) <= 0 {
			t.Errorf("%s: %s = %v, want > 0", c.scenario, c.field, byName[c.scenario][c.field])
		}
	}
	if first, all := num("sync", "first_page_ms"), num("sync", "all_ms"); first > all {
		t.Errorf("sync: first page at %v ms, after all at %v ms", first, all)
	}
	if got := num("connections", "ops"); got != 40 {
		t.Errorf("connections: %v connections opened, want 40", got)
	}
	if got := num("fanout", "deliveries"); got < num("fanout", "ops")*12 {
		t.Errorf("fanout: %v deliveries of %v messages to 12 members, want every one",
			got, num("fanout", "ops"))
	}
	if sent, got := num("latency", "ops"), num("latency", "deliveries"); got != sent {
		t.Errorf("latency: %v deliveries of %v sends, want one each", got, sent)
	}
	ceilingParams, _ := byName["ceiling"]["params"].(map[string]any)
	if ceilingParams["batched_ops_per_sec"] == nil {
		t.Errorf("ceiling: no batched_ops_per_sec in %v", ceilingParams)
	}
	for _, s := range []string{"ceiling", "send", "latency"} {
		params, _ := byName[s]["params"].(map[string]any)
		if perEntry, _ := params["commands_per_entry"].(float64); perEntry < 1 {
			t.Errorf("%s: commands_per_entry %v, want at least 1", s, params["commands_per_entry"])
		}
	}
	wantProfiles(t, profiles)
}

// wantProfiles checks that --profile saved, for every timed scenario, the
// server's and the load generator's CPU profiles, and the server's heap
// profiles of connections and sync: each a gzipped pprof file.
func wantProfiles(t *testing.T, dir string) {
	t.Helper()
	want := []string{"ceiling-bench-cpu", "connections-heap-node1", "sync-heap-node1"}
	for _, s := range []string{"send", "latency", "fanout"} {
		want = append(want, s+"-cpu-node1", s+"-bench-cpu")
	}
	for _, name := range want {
		b, err := os.ReadFile(filepath.Join(dir, name+".pprof"))
		if err != nil {
			t.Errorf("profile %s: %v", name, err)
			continue
		}
		if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
			t.Errorf("profile %s: %d bytes, not a gzipped profile", name, len(b))
		}
	}
}

func TestBench_WebSocket(t *testing.T) {
	t.Parallel()
	results := runBenchCmd(t, "--ws", "send", "fanout")
	wantScenarios(t, results, "send", "fanout")
	for _, r := range results {
		checkBenchResult(t, r)
	}
}

// One invocation measures a single node and a cluster of three against
// the same ceiling, and gives the cluster's send its ratio to the single
// node's.
func TestBench_ClusterSizes(t *testing.T) {
	t.Parallel()
	results := runBenchCmd(t, "--cluster", "1,3", "ceiling", "send")
	wantScenarios(t, results, "ceiling", "send", "send")
	for _, r := range results {
		checkBenchResult(t, r)
	}
	for i, want := range []float64{1, 3} {
		r := results[i+1]
		params, _ := r["params"].(map[string]any)
		if got, _ := params["servers"].(float64); got != want {
			t.Errorf("send %d: on %v servers, want %v", i+1, got, want)
		}
		if ratio, _ := r["ceiling_ratio"].(float64); ratio <= 0 {
			t.Errorf("send on %v servers: no ratio to the ceiling", want)
		}
	}
	if ratio, _ := results[2]["one_node_ratio"].(float64); ratio <= 0 {
		t.Errorf("send on three servers: one_node_ratio %v, want > 0",
			results[2]["one_node_ratio"])
	}
	if _, ok := results[1]["one_node_ratio"]; ok {
		t.Error("send on one server has a ratio to itself")
	}
}

// --shards gives the nodes bench starts that many group shards, as the
// servers' metrics report.
func TestBench_Shards(t *testing.T) {
	t.Parallel()
	results := runBenchCmd(t, "--shards", "3", "send")
	wantScenarios(t, results, "send")
	checkBenchResult(t, results[0])
	params, _ := results[0]["params"].(map[string]any)
	if got, _ := params["group_shards"].(float64); got != 3 {
		t.Fatalf("send ran on servers of %v group shards, want 3", params["group_shards"])
	}
	_, stderr, err := benchCmd(t, "--addr", "127.0.0.1:1", "--shards", "2", "send")
	if err == nil || !strings.Contains(stderr, "without --addr") {
		t.Fatalf("--shards with --addr: got %v, stderr %q; want a refusal", err, stderr)
	}
}

func TestBench_ExternalServer(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{extra: benchServeFlags})
	results := runBenchCmd(t, "--addr", s.clientAddr, "--http-addr", s.httpAddr, "send", "sync")
	wantScenarios(t, results, "send", "sync")
	for _, r := range results {
		checkBenchResult(t, r)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"memory without http", []string{"--addr", s.clientAddr, "connections"},
			"needs the servers' HTTP addresses"},
		{"http for another count of servers", []string{"--addr", s.clientAddr,
			"--addr", s.clientAddr, "--http-addr", s.httpAddr, "send"}, "1 HTTP addresses for 2"},
		{"profiles without the secret", []string{"--addr", s.clientAddr, "--http-addr",
			s.httpAddr, "--profile", t.TempDir(), "send"}, "need the cluster secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := benchCmd(t, tc.args...)
			if err == nil || !strings.Contains(stderr, tc.want) {
				t.Fatalf("got %v, stderr %q; want a failure saying %q", err, stderr, tc.want)
			}
		})
	}
}

func TestClusterSizes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
	}{
		{"1", []int{1}}, {"3", []int{3}}, {"1,3", []int{1, 3}}, {" 1, 3 ", []int{1, 3}},
		{"0", nil}, {"x", nil}, {"", nil}, {"1,-3", nil},
	} {
		got, err := clusterSizes(tc.in)
		if !slices.Equal(got, tc.want) || (err == nil) != (tc.want != nil) {
			t.Errorf("clusterSizes(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}
