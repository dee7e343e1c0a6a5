package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/schat/schat/cli/bench"
)

func benchCommand() *cli.Command {
	d := bench.DefaultConfig()
	return &cli.Command{
		Name:      "bench",
		Usage:     "measure a node or cluster under load",
		ArgsUsage: "SCENARIO... (" + strings.Join(bench.Scenarios, ", ") + ", or all)",
		Description: "Without --addr, starts `schat serve` (or clusters of the sizes --cluster\n" +
			"lists, one after another) in a temporary directory on loopback and stops it\n" +
			"at the end. A server started by hand needs --rate-per-minute high enough for\n" +
			"the set-up's registrations and logins (for example 100000000), and sets up\n" +
			"faster with a cheap password hash (--argon2-memory-kib 1024 --argon2-time 1).",
		Flags:  benchFlags(d),
		Action: runBench,
	}
}

func benchFlags(d bench.Config) []cli.Flag {
	return append([]cli.Flag{
		&cli.StringSliceFlag{Name: "addr",
			Usage: "TCP client address of a node (repeat for more)"},
		&cli.StringSliceFlag{Name: "http-addr", Usage: "HTTP address of each --addr node, " +
			"in the same order: /metrics, /debug/pprof and WebSocket"},
		&cli.BoolFlag{Name: "ws", Usage: "connect over WebSocket instead of TCP"},
		&cli.StringFlag{Name: "cluster", Value: "1", Usage: "without --addr: how many nodes " +
			"to start; a list (1,3) measures each size in turn against one ceiling"},
		&cli.IntFlag{Name: "shards", Value: 1,
			Usage: "without --addr: group shards of the nodes it starts"},
		&cli.StringFlag{Name: "dir", Value: d.TempDir,
			Usage: "where started nodes and the ceiling keep their files (the disk measured)"},
		&cli.BoolFlag{Name: "json", Usage: "print one JSON object per scenario"},
		&cli.DurationFlag{Name: "duration", Value: d.Duration,
			Usage: "length of each timed scenario"},
		&cli.IntFlag{Name: "size", Value: d.MessageSize, Usage: "message text length in bytes"},
		&cli.IntFlag{Name: "clients", Value: d.Clients, Usage: "send: connections, one user each"},
		&cli.IntFlag{Name: "groups", Value: d.Groups, Usage: "send and latency: groups"},
		&cli.IntFlag{Name: "in-flight", Value: d.InFlight,
			Usage: "send and fanout: requests each sending connection keeps outstanding"},
		&cli.Float64Flag{Name: "rate", Usage: "latency: messages per second " +
			"(default: half of send's figure in this run, else 1000)"},
		&cli.IntFlag{Name: "members", Value: d.Members, Usage: "fanout: online members"},
		&cli.IntFlag{Name: "senders", Value: d.Senders, Usage: "fanout: members who send"},
		&cli.IntFlag{Name: "conns", Value: d.Conns, Usage: "connections: idle connections"},
		&cli.IntFlag{Name: "conn-users", Value: d.ConnUsers,
			Usage: "connections: users they log in as"},
		&cli.IntFlag{Name: "sync-groups", Value: d.SyncGroups, Usage: "sync: groups of the user"},
		&cli.IntFlag{Name: "unread", Value: d.Unread, Usage: "sync: unread messages per group"},
		&cli.IntFlag{Name: "raw-writers", Value: d.RawWriters,
			Usage: "ceiling: entries of one command outstanding"},
		&cli.IntFlag{Name: "writers", Usage: "ceiling, batched: commands outstanding " +
			"(default: --clients × --in-flight, as send)"},
		&cli.StringFlag{Name: "profile", Usage: "save CPU profiles of each timed scenario " +
			"(servers' and the load generator's) and the servers' heap profiles here"},
		&cli.StringFlag{Name: "log-level", Value: "warn", Usage: "debug, info, warn or error"},
	}, secretFlags("with --addr and --profile: to fetch the servers' profiles")...)
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
	sizes, err := clusterSizes(c.String("cluster"))
	if err != nil {
		return err
	}
	if (c.IsSet("cluster") || c.IsSet("shards")) && len(cfg.Addrs) > 0 {
		return errors.New("--cluster and --shards are for the nodes bench starts; " +
			"they go without --addr")
	}
	want := uint64(cfg.Conns) + benchSpareFiles
	if slices.Contains(scenarios, bench.Connections) {
		if limit := raiseFileLimit(want); limit < want {
			cfg.Logger.Warn("open file limit too low for --conns: connections beyond it fail",
				"limit", limit, "conns", cfg.Conns)
		}
	}

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	var results []bench.Result
	if len(cfg.Addrs) > 0 || slices.Equal(scenarios, []string{bench.Ceiling}) {
		results, err = bench.Run(ctx, cfg, scenarios)
	} else {
		results, err = bench.RunSizes(ctx, cfg, scenarios, sizes,
			func(ctx context.Context, n int) (bench.Servers, error) {
				return startBenchCluster(ctx, c.String("dir"), n, c.Int("shards"))
			})
	}
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

// clusterSizes parses --cluster: one node count or a comma-separated list.
func clusterSizes(v string) ([]int, error) {
	var sizes []int
	for _, p := range splitList([]string{v}) {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--cluster %q: want node counts of at least 1, "+
				"such as 3 or 1,3", v)
		}
		sizes = append(sizes, n)
	}
	if len(sizes) == 0 {
		return nil, fmt.Errorf("--cluster %q: no node count", v)
	}
	return sizes, nil
}

// benchConfig builds the load generator's configuration from the flags.
func benchConfig(c *cli.Context) (bench.Config, error) {
	logger, err := newLogger("text", c.String("log-level"))
	if err != nil {
		return bench.Config{}, err
	}
	cfg := bench.Config{
		Addrs:     splitList(c.StringSlice("addr")),
		HTTPAddrs: splitList(c.StringSlice("http-addr")),
		WebSocket: c.Bool("ws"), Duration: c.Duration("duration"), MessageSize: c.Int("size"),
		Clients: c.Int("clients"), Groups: c.Int("groups"), InFlight: c.Int("in-flight"),
		Rate: c.Float64("rate"), Members: c.Int("members"), Senders: c.Int("senders"),
		Conns: c.Int("conns"), ConnUsers: c.Int("conn-users"),
		SyncGroups: c.Int("sync-groups"), Unread: c.Int("unread"), Writers: c.Int("writers"),
		RawWriters: c.Int("raw-writers"), TempDir: c.String("dir"),
		ProfileDir: c.String("profile"), Logger: logger,
	}
	if cfg.Secret, err = clusterSecret(c); err != nil {
		return bench.Config{}, err
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

// startBenchCluster starts n nodes of shards group shards in a new
// directory under parent, with a new cluster secret; their Stop stops
// them and removes the directory.
func startBenchCluster(ctx context.Context, parent string, n, shards int) (bench.Servers, error) {
	dir, err := os.MkdirTemp(parent, "schat-bench-")
	if err != nil {
		return bench.Servers{}, err
	}
	secret := newBenchSecret()
	servers, err := startBenchServers(ctx, dir, secret, n, shards)
	if err != nil {
		os.RemoveAll(dir)
		return bench.Servers{}, err
	}
	out := bench.Servers{Secret: secret, Stop: func() error {
		err := stopBenchServers(servers)
		return errors.Join(err, os.RemoveAll(dir))
	}}
	for _, s := range servers {
		out.Addrs = append(out.Addrs, s.clientAddr)
		out.HTTPAddrs = append(out.HTTPAddrs, s.httpAddr)
	}
	return out, nil
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
