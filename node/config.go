// Package node runs one schat node: its shards (each a raft instance over a
// bbolt state machine), the client-facing service that turns requests into
// commands and reads, the hub that pushes committed events to connected
// clients, and the HTTP endpoints for health, metrics and WebSocket.
package node

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"
)

// Config configures a node. A zero field takes the value DefaultConfig
// gives it.
type Config struct {
	// DataDir holds the node's shards; created on first start.
	DataDir string
	// NodeID names this node in raft; defaults to "node1".
	NodeID string
	// RaftAddr is the node-to-node address (raft and forwarding).
	RaftAddr string
	// RaftAdvertise is the address other nodes dial; defaults to the bound
	// RaftAddr.
	RaftAdvertise string
	// ClientAddr is the TCP client protocol address; empty disables it.
	ClientAddr string
	// HTTPAddr serves /ws, /healthz, /readyz and /metrics; empty disables.
	HTTPAddr string
	// TLS, when set, is used on the client and HTTP listeners.
	TLS *tls.Config

	// Join lists node-to-node addresses of cluster members. A node with an
	// empty data directory asks them to add it; a node with data ignores
	// it, unless a join it began was cut short, when it asks them too.
	// Without Join, a new data directory becomes a one-node cluster.
	Join []string
	// BootstrapExpect, with Join listing the other nodes, lets N nodes
	// started alike form a new cluster: once N nodes with empty
	// directories can reach each other, they bootstrap together. If one
	// of them already belongs to a cluster, the node joins it instead.
	BootstrapExpect int
	// NodeTLS and NodeClientTLS, when set (see LoadNodeTLS), encrypt the
	// node-to-node port with mutual TLS, on top of the cluster secret.
	NodeTLS       *tls.Config
	NodeClientTLS *tls.Config
	// ClusterSecret authenticates nodes to each other. A new cluster
	// generates one (see Node.NewSecret); joining nodes must be given it.
	ClusterSecret string

	// Shards is the number of group shards of a new data directory. An
	// existing directory keeps the count it was created with; when Shards
	// is set explicitly and differs from it, New refuses to start.
	Shards int
	// explicitShards records whether Shards was set rather than defaulted.
	explicitShards int

	// Limits bound what clients may store and ask for; each zero field
	// takes its default.
	Limits Limits
	// Conns bound each client connection; each zero field takes its
	// default.
	Conns ConnLimits
	// Files bounds uploads and downloads.
	Files FileConfig
	// Ownership sets how the meta shard's leader keeps its record of who
	// owns which group in line with the groups.
	Ownership OwnershipCheck
	// Retention limits how long messages are kept; the zero limits keep
	// every message.
	Retention Retention
	// PasswordKDF are the argon2id parameters for new password hashes.
	PasswordKDF KDFParams
	// SessionTTL is how long a login token stays valid.
	SessionTTL time.Duration
	// ApplyTimeout bounds how long a request waits for its commit.
	ApplyTimeout time.Duration
	// RatePerMinute limits, per client address and per user, the requests
	// that cost a password hash: register, login, apply, password changes
	// and setting a group's join password.
	RatePerMinute int
	// MaxHashes bounds the argon2id hashes running at once on the node,
	// each holding PasswordKDF.Memory; HashWait is how long a request waits
	// for a turn before it is answered RATE_LIMITED.
	MaxHashes int
	HashWait  time.Duration
	// Raft tunes the consensus layer.
	Raft RaftTuning
	// Backup schedules automatic backups; off while Backup.Dir is empty.
	Backup BackupSchedule
	// Version is the schat version, recorded in backups.
	Version string

	Logger *slog.Logger

	// failPoint, set only by tests, is called at named points of forming
	// the cluster ("open shard N", "join shard N"); an error from it stops
	// New there, as a crash at that point would.
	failPoint func(point string) error
}

// FileConfig bounds uploads. The limits the state machine checks travel in
// the commands that need them, as Limits do; the others are this node's.
type FileConfig struct {
	MaxSize       int64         // bytes of one upload
	MaxUploads    int           // uploads in progress at once on one shard
	UploadTimeout time.Duration // an upload idle this long is dropped
	UnclaimedTTL  time.Duration // a file never sent nor set as an avatar goes after
	SweepInterval time.Duration // how often shard leaders look for both
	URLTTL        time.Duration // lifetime of a signed download URL

	// MaxSpools and MaxUserSpools bound the uploads this node receives at
	// once, in all and per user; one more is refused before its body is
	// read. Each holds a spool file of up to MaxSize on this node's disk.
	MaxSpools     int
	MaxUserSpools int
	// BodyIdle ends an upload whose body sends nothing for this long.
	BodyIdle time.Duration
}

// OwnershipCheck configures the reconciliation of the owned-groups
// record on the meta shard with the owners the group shards hold.
type OwnershipCheck struct {
	// Interval is the time between two passes over every group.
	Interval time.Duration
	// Grace is how long an entry is left alone after it was written: a
	// create or a transfer may still be between its two steps. It must
	// exceed twice ApplyTimeout.
	Grace time.Duration
}

// Retention bounds the history each group keeps. Group shard leaders
// remove what falls outside it, in batches, together with what dissolved
// groups left behind.
type Retention struct {
	// MaxAge removes messages older than this; 0 keeps them however old.
	MaxAge time.Duration
	// MaxMessages keeps the newest this many messages of each group; 0
	// keeps every one.
	MaxMessages int
	// Interval is how often group shard leaders look for records to
	// remove.
	Interval time.Duration
	// Batch bounds the records one trim command removes.
	Batch int
}

// RaftTuning holds the raft settings worth changing per deployment.
type RaftTuning struct {
	HeartbeatTimeout  time.Duration
	ElectionTimeout   time.Duration
	CommitTimeout     time.Duration
	MaxAppendEntries  int
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
}

// DefaultConfig returns the configuration of a single node on embedded
// defaults.
func DefaultConfig() Config {
	return Config{
		DataDir:    "schat-data",
		NodeID:     "node1",
		RaftAddr:   "127.0.0.1:7421",
		ClientAddr: ":7420",
		HTTPAddr:   ":7480",
		Shards:     DefaultShards,
		Limits:     DefaultLimits(),
		Conns:      defaultConns(),
		Files: FileConfig{
			MaxSize:       20 << 20,
			MaxUploads:    64,
			UploadTimeout: 10 * time.Minute,
			UnclaimedTTL:  24 * time.Hour,
			SweepInterval: time.Minute,
			URLTTL:        time.Hour,
			MaxSpools:     16,
			MaxUserSpools: 4,
			BodyIdle:      30 * time.Second,
		},
		Ownership: OwnershipCheck{
			Interval: 5 * time.Minute,
			Grace:    10 * time.Minute,
		},
		Retention: Retention{
			Interval: time.Minute,
			Batch:    1000,
		},
		PasswordKDF:   DefaultKDF,
		SessionTTL:    30 * 24 * time.Hour,
		ApplyTimeout:  10 * time.Second,
		RatePerMinute: 30,
		MaxHashes:     max(2, runtime.NumCPU()),
		HashWait:      2 * time.Second,
		// With entries of at most two upload chunks (proposer.go), 64
		// entries bound an AppendEntries and an apply batch near 32 MiB.
		Raft: RaftTuning{
			HeartbeatTimeout:  time.Second,
			ElectionTimeout:   time.Second,
			CommitTimeout:     5 * time.Millisecond,
			MaxAppendEntries:  64,
			SnapshotThreshold: 8192,
			SnapshotInterval:  2 * time.Minute,
			TrailingLogs:      10240,
		},
	}
}

// DefaultShards is the group shard count of a new data directory. On a
// two-core machine every extra raft pipeline costs CPU that a three-node
// cluster needs for replication, and one group shard gave the most
// acknowledged sends per second; BENCHMARKS.md has the measurements.
const DefaultShards = 1

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	setStr(&c.DataDir, d.DataDir)
	setStr(&c.NodeID, d.NodeID)
	setStr(&c.RaftAddr, d.RaftAddr)
	c.explicitShards = c.Shards
	if c.Shards == 0 {
		c.Shards = d.Shards
	}
	c.Limits = c.Limits.withDefaults()
	c.Conns = c.Conns.withDefaults()
	c.Files = c.Files.withDefaults(d.Files)
	setDur(&c.Ownership.Interval, d.Ownership.Interval)
	setDur(&c.Ownership.Grace, d.Ownership.Grace)
	setDur(&c.Retention.Interval, d.Retention.Interval)
	if c.Retention.Batch == 0 {
		c.Retention.Batch = d.Retention.Batch
	}
	if c.PasswordKDF == (KDFParams{}) {
		c.PasswordKDF = d.PasswordKDF
	}
	setDur(&c.SessionTTL, d.SessionTTL)
	setDur(&c.ApplyTimeout, d.ApplyTimeout)
	if c.RatePerMinute == 0 {
		c.RatePerMinute = d.RatePerMinute
	}
	setInt(&c.MaxHashes, d.MaxHashes)
	setDur(&c.HashWait, d.HashWait)
	if c.Raft == (RaftTuning{}) {
		c.Raft = d.Raft
	}
	c.Backup = c.Backup.withDefaults()
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// withDefaults takes d whole for a zero FileConfig, and d's node-side
// bounds for those left zero.
func (f FileConfig) withDefaults(d FileConfig) FileConfig {
	if f == (FileConfig{}) {
		return d
	}
	setInt(&f.MaxSpools, d.MaxSpools)
	setInt(&f.MaxUserSpools, d.MaxUserSpools)
	setDur(&f.BodyIdle, d.BodyIdle)
	return f
}

func setStr(p *string, d string) {
	if *p == "" {
		*p = d
	}
}

func setDur(p *time.Duration, d time.Duration) {
	if *p == 0 {
		*p = d
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Shards < 1 || c.Shards > maxShards:
		return fmt.Errorf("node: shards must be 1..%d, got %d", maxShards, c.Shards)
	case c.PasswordKDF.Memory < 1024 || c.PasswordKDF.Time < 1 || c.PasswordKDF.Threads < 1:
		return errors.New("node: argon2id needs at least 1 MiB, 1 pass and 1 thread")
	case c.RatePerMinute < 1:
		return errors.New("node: rate per minute must be at least 1")
	case c.MaxHashes < 1 || c.MaxHashes > 1024:
		return fmt.Errorf("node: max hashes must be 1..1024, got %d", c.MaxHashes)
	case c.HashWait < 0:
		return fmt.Errorf("node: hash wait must not be negative, got %v", c.HashWait)
	case c.Files.MaxSize < 1 || c.Files.MaxUploads < 1 || c.Files.UploadTimeout <= 0 ||
		c.Files.UnclaimedTTL <= 0 || c.Files.SweepInterval <= 0 || c.Files.URLTTL <= 0 ||
		c.Files.MaxSpools < 1 || c.Files.MaxUserSpools < 1 || c.Files.BodyIdle <= 0:
		return errors.New("node: file limits and times must be positive")
	case c.Ownership.Interval <= 0 || c.Ownership.Grace < 2*c.ApplyTimeout:
		return errors.New("node: the ownership grace must be at least twice the apply timeout")
	case c.Retention.MaxAge < 0 || c.Retention.MaxMessages < 0:
		return errors.New("node: retention limits must not be negative")
	case c.Retention.Interval <= 0 || c.Retention.Batch < 1 || c.Retention.Batch > maxTrimBatch:
		return fmt.Errorf("node: the retention interval must be positive and the batch 1..%d",
			maxTrimBatch)
	}
	if err := c.Limits.validate(); err != nil {
		return err
	}
	if err := c.Conns.validate(c.Limits); err != nil {
		return err
	}
	return c.Backup.validate()
}

// maxShards keeps shard numbers within the notice ID's shard bits.
const maxShards = 1000

// maxTrimBatch keeps one trim command's transaction small.
const maxTrimBatch = 100_000
