package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/schat/schat/cli/bench"
)

func benchCommand() *cli.Command {
	d := bench.DefaultConfig()
	return &cli.Command{
		Name:  "bench",
		Usage: "measure a node or cluster under load",
		ArgsUsage: "SCENARIO... (" + strings.Join(bench.Scenarios, ", ") +
			", or all)",
		Description: "Without --addr, starts `schat serve` (or --cluster N of them) in a\n" +
			"temporary directory on loopback and stops it at the end. A server started\n" +
			"by hand needs --rate-per-minute high enough for the set-up's registrations\n" +
			"and logins (for example 100000000), and sets up faster with a cheap\n" +
			"password hash (--argon2-memory-kib 1024 --argon2-time 1).",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "addr", Usage: "TCP client address of a node (repeat for more)"},
			&cli.StringSliceFlag{Name: "http-addr",
				Usage: "HTTP address of a node, for /metrics and WebSocket (repeat for more)"},
			&cli.BoolFlag{Name: "ws", Usage: "connect over WebSocket instead of TCP"},
			&cli.IntFlag{Name: "cluster", Value: 1, Usage: "without --addr: how many nodes to start"},
			&cli.StringFlag{Name: "dir", Value: d.TempDir,
				Usage: "where started nodes and the ceiling keep their files (the disk measured)"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object per scenario"},
			&cli.DurationFlag{Name: "duration", Value: d.Duration, Usage: "length of each timed scenario"},
			&cli.IntFlag{Name: "size", Value: d.MessageSize, Usage: "message text length in bytes"},
			&cli.IntFlag{Name: "clients", Value: d.Clients, Usage: "send: connections, one user each"},
			&cli.IntFlag{Name: "groups", Value: d.Groups, Usage: "send and latency: groups"},
			&cli.IntFlag{Name: "in-flight", Value: d.InFlight,
				Usage: "requests each sending connection keeps outstanding"},
			&cli.Float64Flag{Name: "rate",
				Usage: "latency: messages per second (default: half of send's figure in this run, else 1000)"},
			&cli.IntFlag{Name: "members", Value: d.Members, Usage: "fanout: online members of the group"},
			&cli.IntFlag{Name: "senders", Value: d.Senders, Usage: "fanout: members who send"},
			&cli.IntFlag{Name: "conns", Value: d.Conns, Usage: "connections: idle connections"},
			&cli.IntFlag{Name: "conn-users", Value: d.ConnUsers, Usage: "connections: users they log in as"},
			&cli.IntFlag{Name: "sync-groups", Value: d.SyncGroups, Usage: "sync: groups of the user"},
			&cli.IntFlag{Name: "unread", Value: d.Unread, Usage: "sync: unread messages per group"},
			&cli.IntFlag{Name: "writers", Value: d.Writers, Usage: "ceiling: concurrent raft proposers"},
			&cli.StringFlag{Name: "profile",
				Usage: "save the servers' CPU profiles of each timed scenario (and heap profiles) here"},
			&cli.StringFlag{Name: "cluster-secret", EnvVars: []string{"SCHAT_CLUSTER_SECRET"},
				Usage: "with --addr and --profile: the cluster secret, to fetch profiles"},
			&cli.StringFlag{Name: "log-level", Value: "warn", Usage: "debug, info, warn or error"},
		},
		Action: runBench,
	}
}

func runBench(c *cli.Context) error {
	scenarios, err := benchScenarios(c.Args().Slice())
	if err != nil {
		return err
	}
	cfg, err := benchConfig(c)
	if err != nil {
		return err
	}
	if want := uint64(cfg.Conns) + benchSpareFiles; slices.Contains(scenarios, bench.Connections) {
		if limit := raiseFileLimit(want); limit < want {
			cfg.Logger.Warn("open file limit too low for --conns: connections beyond it fail",
				"limit", limit, "conns", cfg.Conns)
		}
	}

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(cfg.Addrs) == 0 && !slices.Equal(scenarios, []string{bench.Ceiling}) {
		cfg.Secret = newBenchSecret()
		servers, dir, err := benchServers(ctx, c.String("dir"), cfg.Secret, c.Int("cluster"))
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		defer stopBenchServers(servers)
		for _, s := range servers {
			cfg.Addrs = append(cfg.Addrs, s.clientAddr)
			cfg.HTTPAddrs = append(cfg.HTTPAddrs, s.httpAddr)
		}
	}

	results, err := bench.Run(ctx, cfg, scenarios)
	printBench(c, results)
	return err
}

// benchSpareFiles are the files bench needs beside one per idle
// connection: set-up and load connections, and the ceiling's files.
const benchSpareFiles = 4096

// benchScenarios checks the scenario arguments; "all" means every one.
func benchScenarios(args []string) ([]string, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("name a scenario: %s, or all", strings.Join(bench.Scenarios, ", "))
	}
	if slices.Contains(args, "all") {
		return bench.Scenarios, nil
	}
	for _, a := range args {
		if !slices.Contains(bench.Scenarios, a) {
			return nil, fmt.Errorf("unknown scenario %q: want %s, or all", a,
				strings.Join(bench.Scenarios, ", "))
		}
	}
	return args, nil
}

// benchConfig builds the load generator's configuration from the flags.
func benchConfig(c *cli.Context) (bench.Config, error) {
	logger, err := newLogger("text", c.String("log-level"))
	if err != nil {
		return bench.Config{}, err
	}
	cfg := bench.Config{
		Addrs: splitList(c.StringSlice("addr")), HTTPAddrs: splitList(c.StringSlice("http-addr")),
		WebSocket: c.Bool("ws"), Duration: c.Duration("duration"), MessageSize: c.Int("size"),
		Clients: c.Int("clients"), Groups: c.Int("groups"), InFlight: c.Int("in-flight"),
		Rate: c.Float64("rate"), Members: c.Int("members"), Senders: c.Int("senders"),
		Conns: c.Int("conns"), ConnUsers: c.Int("conn-users"), SyncGroups: c.Int("sync-groups"),
		Unread: c.Int("unread"), Writers: c.Int("writers"), TempDir: c.String("dir"),
		ProfileDir: c.String("profile"), Secret: c.String("cluster-secret"), Logger: logger,
	}
	if c.Int("cluster") != 1 && len(cfg.Addrs) > 0 {
		return cfg, fmt.Errorf("--cluster starts nodes; it goes without --addr")
	}
	if isTerminal(os.Stderr) {
		cfg.Progress = os.Stderr
	}
	return cfg, nil
}

// newBenchSecret returns a cluster secret for the nodes bench starts.
func newBenchSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// benchServers starts n nodes in a new directory under parent.
func benchServers(ctx context.Context, parent, secret string,
	n int) ([]*benchServer, string, error) {
	if n < 1 {
		return nil, "", fmt.Errorf("--cluster must be at least 1")
	}
	dir, err := os.MkdirTemp(parent, "schat-bench-")
	if err != nil {
		return nil, "", err
	}
	servers, err := startBenchServers(ctx, dir, secret, n)
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}
	return servers, dir, nil
}

// printBench prints the results: JSON lines with --json, else a summary.
func printBench(c *cli.Context, results []bench.Result) {
	if !c.Bool("json") {
		bench.Summary(c.App.Writer, results)
		return
	}
	enc := json.NewEncoder(c.App.Writer)
	for _, r := range results {
		enc.Encode(r)
	}
}
