package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/schat/schat/node"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:   "serve",
		Usage:  "run a schat node",
		Flags:  append(serveFlags(node.DefaultConfig()), limitFlags(node.DefaultConfig())...),
		Action: serve,
	}
}

// serveFlags are the flags of the node's addresses, cluster, security,
// backups and logs.
func serveFlags(d node.Config) []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "data-dir", Value: d.DataDir, EnvVars: []string{"SCHAT_DATA_DIR"},
			Usage: "directory of the node's state"},
		&cli.StringFlag{Name: "node-id", Value: d.NodeID, EnvVars: []string{"SCHAT_NODE_ID"},
			Usage: "this node's name in the cluster"},
		&cli.StringFlag{Name: "client-addr", Value: d.ClientAddr,
			EnvVars: []string{"SCHAT_CLIENT_ADDR"},
			Usage:   "TCP address of the client protocol (empty: off)"},
		&cli.StringFlag{Name: "http-addr", Value: d.HTTPAddr, EnvVars: []string{"SCHAT_HTTP_ADDR"},
			Usage: "HTTP address for WebSocket, /healthz, /readyz and /metrics (empty: off)"},
		&cli.StringFlag{Name: "raft-addr", Value: d.RaftAddr, EnvVars: []string{"SCHAT_RAFT_ADDR"},
			Usage: "node-to-node address"},
		&cli.StringFlag{Name: "raft-advertise", EnvVars: []string{"SCHAT_RAFT_ADVERTISE"},
			Usage: "node-to-node address other nodes dial (default: --raft-addr)"},
		&cli.IntFlag{Name: "shards", EnvVars: []string{"SCHAT_SHARDS"},
			DefaultText: strconv.Itoa(node.DefaultShards),
			Usage:       "group shards of a new data directory (an existing one keeps its count)"},
		&cli.StringFlag{Name: "tls-cert", EnvVars: []string{"SCHAT_TLS_CERT"},
			Usage: "certificate file: serve clients over TLS"},
		&cli.StringFlag{Name: "tls-key", EnvVars: []string{"SCHAT_TLS_KEY"},
			Usage: "private key file for --tls-cert"},
		&cli.IntFlag{Name: "rate-per-minute", Value: d.RatePerMinute,
			EnvVars: []string{"SCHAT_RATE_PER_MINUTE"},
			Usage: "requests that cost a password hash (register, login, apply, password " +
				"changes, join passwords) allowed per client address and per user per minute"},
		&cli.Int64Flag{Name: "max-file-size", Value: d.Files.MaxSize,
			EnvVars: []string{"SCHAT_MAX_FILE_SIZE"},
			Usage:   "largest upload accepted, in bytes"},
		&cli.DurationFlag{Name: "retention-max-age",
			EnvVars: []string{"SCHAT_RETENTION_MAX_AGE"},
			Usage:   "remove messages older than this, e.g. 2160h for 90 days (0: keep them)"},
		&cli.IntFlag{Name: "retention-max-messages",
			EnvVars: []string{"SCHAT_RETENTION_MAX_MESSAGES"},
			Usage:   "keep only the newest this many messages of each group (0: keep all)"},
		&cli.UintFlag{Name: "argon2-memory-kib", Value: uint(d.PasswordKDF.Memory),
			EnvVars: []string{"SCHAT_ARGON2_MEMORY_KIB"},
			Usage:   "argon2id memory cost of new password hashes, in KiB"},
		&cli.UintFlag{Name: "argon2-time", Value: uint(d.PasswordKDF.Time),
			EnvVars: []string{"SCHAT_ARGON2_TIME"},
			Usage:   "argon2id passes of new password hashes"},
		&cli.IntFlag{Name: "max-hashes", Value: d.MaxHashes, EnvVars: []string{"SCHAT_MAX_HASHES"},
			Usage: "password hashes computed at once; each holds --argon2-memory-kib"},
		&cli.DurationFlag{Name: "hash-wait", Value: d.HashWait,
			EnvVars: []string{"SCHAT_HASH_WAIT"},
			Usage:   "how long a request waits for a hashing turn before it is refused"},
		&cli.StringSliceFlag{Name: "join", EnvVars: []string{"SCHAT_JOIN"},
			Usage: "node-to-node addresses of cluster members to join (HOST:PORT[,HOST:PORT])"},
		&cli.IntFlag{Name: "bootstrap-expect", EnvVars: []string{"SCHAT_BOOTSTRAP_EXPECT"},
			Usage: "with --join listing the others: form a new cluster once this many " +
				"nodes are up"},
		&cli.StringFlag{Name: "node-tls-cert", EnvVars: []string{"SCHAT_NODE_TLS_CERT"},
			Usage: "this node's certificate for mutual TLS between nodes"},
		&cli.StringFlag{Name: "node-tls-key", EnvVars: []string{"SCHAT_NODE_TLS_KEY"},
			Usage: "private key for --node-tls-cert"},
		&cli.StringFlag{Name: "node-tls-ca", EnvVars: []string{"SCHAT_NODE_TLS_CA"},
			Usage: "CA certificate that signed every node's certificate"},
		&cli.StringFlag{Name: "backup-dir", EnvVars: []string{"SCHAT_BACKUP_DIR"},
			Usage: "take scheduled backups into this directory (on the meta shard's leader)"},
		&cli.DurationFlag{Name: "backup-interval", Value: time.Hour,
			EnvVars: []string{"SCHAT_BACKUP_INTERVAL"},
			Usage:   "time between scheduled backups; one is skipped when nothing changed"},
		&cli.IntFlag{Name: "backup-keep", Value: 7, EnvVars: []string{"SCHAT_BACKUP_KEEP"},
			Usage: "scheduled backup files to keep"},
		&cli.StringFlag{Name: "log-format", Value: "text", EnvVars: []string{"SCHAT_LOG_FORMAT"},
			Usage: "text or json"},
		&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: []string{"SCHAT_LOG_LEVEL"},
			Usage: "debug, info, warn or error"},
	}, secretFlags("needed to join (a new cluster makes one, prints it once and "+
		"keeps it in <data-dir>/cluster.secret)")...)
}

func serve(c *cli.Context) error {
	logger, err := newLogger(c.String("log-format"), c.String("log-level"))
	if err != nil {
		return err
	}
	cfg, err := serveConfig(c)
	if err != nil {
		return err
	}
	cfg.Logger = logger

	if limit := raiseFileLimit(serveFiles); limit < serveFiles {
		logger.Info("open file limit caps client connections", "limit", limit)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := node.New(cfg)
	if err != nil {
		return err
	}
	if secret := n.NewSecret(); secret != nil {
		// Shown once, on standard output and never in the log: other nodes
		// need it to join, and it is kept in the data directory.
		printNewSecret(cfg.DataDir, secret)
	}
	if err := n.WaitReady(ctx); err != nil {
		n.Close()
		return err
	}
	logger.Info("ready", "client_addr", n.ClientAddr(), "http_addr", n.HTTPAddr())
	<-ctx.Done()
	logger.Info("shutting down")
	return n.Close()
}

// serveConfig builds the node's configuration from the flags, without its
// logger.
func serveConfig(c *cli.Context) (node.Config, error) {
	cfg := node.DefaultConfig()
	cfg.DataDir = c.String("data-dir")
	cfg.NodeID = c.String("node-id")
	cfg.ClientAddr = c.String("client-addr")
	cfg.HTTPAddr = c.String("http-addr")
	cfg.RaftAddr = c.String("raft-addr")
	cfg.RaftAdvertise = c.String("raft-advertise")
	cfg.Shards = c.Int("shards")
	cfg.RatePerMinute = c.Int("rate-per-minute")
	cfg.Files.MaxSize = c.Int64("max-file-size")
	cfg.Join = splitList(c.StringSlice("join"))
	cfg.BootstrapExpect = c.Int("bootstrap-expect")
	cfg.Retention.MaxAge = c.Duration("retention-max-age")
	cfg.Retention.MaxMessages = c.Int("retention-max-messages")
	var err error
	if cfg.ClusterSecret, err = clusterSecret(c); err != nil {
		return cfg, err
	}
	cfg.PasswordKDF.Memory = uint32(c.Uint("argon2-memory-kib"))
	cfg.PasswordKDF.Time = uint32(c.Uint("argon2-time"))
	cfg.MaxHashes = c.Int("max-hashes")
	cfg.HashWait = c.Duration("hash-wait")
	cfg.Version = version
	cfg.Backup = node.BackupSchedule{Dir: c.String("backup-dir"),
		Interval: c.Duration("backup-interval"), Keep: c.Int("backup-keep")}
	if err := applyLimits(c, &cfg); err != nil {
		return cfg, err
	}
	if cfg.TLS, err = loadTLS(c.String("tls-cert"), c.String("tls-key")); err != nil {
		return cfg, err
	}
	if cert := c.String("node-tls-cert"); cert != "" || c.String("node-tls-ca") != "" {
		cfg.NodeTLS, cfg.NodeClientTLS, err = node.LoadNodeTLS(cert, c.String("node-tls-key"),
			c.String("node-tls-ca"))
	}
	return cfg, err
}

// serveFiles is the open file limit serve asks for: one file per client
// connection, with room for tens of thousands.
const serveFiles = 1 << 16

func newLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, not %q", format)
}

func loadTLS(cert, key string) (*tls.Config, error) {
	if cert == "" && key == "" {
		return nil, nil
	}
	if cert == "" || key == "" {
		return nil, fmt.Errorf("--tls-cert and --tls-key go together")
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("load TLS key pair: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// splitList flattens comma-separated values given once or repeatedly.
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}
