package main

import (
	"bytes"
	"context"
	"os/exec"
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
	ctx, cancel := context.WithTimeout(context.Background(), processWait)
	defer cancel()
	full := append(append([]string{"bench", "--json", "--dir", t.TempDir()}, tinyBench...),
		args...)
	cmd := exec.CommandContext(ctx, schatBinary(t), full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("schat %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(full, " "), err,
			stdout.String(), stderr.String())
	}
	return parseLines(t, stdout.String())
}

// checkBenchResult checks that a scenario's figures are sane: work done,
// no errors, percentiles in order and the parameters reported. It asserts
// nothing about speed.
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
	if num("rss_bytes") <= 0 {
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
	results := runBenchCmd(t, "all")
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
		{"send", "ceiling_ratio"},
		{"fanout", "deliveries_per_sec"},
		{"sync", "first_page_ms"},
		{"sync", "all_ms"},
		{"sync", "peak_rss_bytes"},
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
}

func TestBench_WebSocketAndCluster(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"websocket", []string{"--ws", "send", "fanout"}},
		{"cluster of three", []string{"--cluster", "3", "send", "latency"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			results := runBenchCmd(t, tc.args...)
			wantScenarios(t, results, tc.args[len(tc.args)-2:]...)
			for _, r := range results {
				checkBenchResult(t, r)
			}
		})
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
}
