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

	Limits Limits
	// Files bounds uploads and downloads.
	Files FileConfig
	// PasswordKDF are the argon2id parameters for new password hashes.
	PasswordKDF KDFParams
	// SessionTTL is how long a login token stays valid.
	SessionTTL time.Duration
	// ApplyTimeout bounds how long a request waits for its commit.
	ApplyTimeout time.Duration
	// RatePerMinute limits register, login and apply per client address.
	RatePerMinute int
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

// Limits bound what clients may store. They are checked on the node before
// a command is proposed; those that depend on state travel in the command.
type Limits struct {
	MaxLoginName   int           // runes
	MaxName        int           // display and group names, runes
	MaxDescription int           // runes
	MaxMessage     int           // runes of a text message
	MaxPassword    int           // bytes
	MinPassword    int           // bytes
	MaxOwnedGroups int           // groups one user may own
	MaxMembers     int           // members of one group
	DefaultPage    int           // messages or groups per page
	MaxPage        int           // the most a client may ask for
	MaxProfiles    int           // user IDs per profile request
	RecallWindow   time.Duration // how long a sender may recall
}

// FileConfig bounds uploads. The limits travel in the commands that need
// them, as Limits do.
type FileConfig struct {
	MaxSize       int64         // bytes of one upload
	MaxUploads    int           // uploads in progress at once on one shard
	UploadTimeout time.Duration // an upload idle this long is dropped
	UnclaimedTTL  time.Duration // a file never sent nor set as an avatar goes after
	SweepInterval time.Duration // how often shard leaders look for both
	URLTTL        time.Duration // lifetime of a signed download URL
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
		Limits: Limits{
			MaxLoginName:   32,
			MaxName:        64,
			MaxDescription: 1024,
			MaxMessage:     4000,
			MaxPassword:    256,
			MinPassword:    3,
			MaxOwnedGroups: 20,
			MaxMembers:     2000,
			DefaultPage:    50,
			MaxPage:        200,
			MaxProfiles:    100,
			RecallWindow:   2 * time.Minute,
		},
		Files: FileConfig{
			MaxSize:       20 << 20,
			MaxUploads:    64,
			UploadTimeout: 10 * time.Minute,
			UnclaimedTTL:  24 * time.Hour,
			SweepInterval: time.Minute,
			URLTTL:        time.Hour,
		},
		PasswordKDF:   DefaultKDF,
		SessionTTL:    30 * 24 * time.Hour,
		ApplyTimeout:  10 * time.Second,
		RatePerMinute: 30,
		Raft: RaftTuning{
			HeartbeatTimeout:  time.Second,
			ElectionTimeout:   time.Second,
			CommitTimeout:     5 * time.Millisecond,
			MaxAppendEntries:  512,
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
	if c.Limits == (Limits{}) {
		c.Limits = d.Limits
	}
	if c.Files == (FileConfig{}) {
		c.Files = d.Files
	}
	if c.PasswordKDF == (KDFParams{}) {
		c.PasswordKDF = d.PasswordKDF
	}
	setDur(&c.SessionTTL, d.SessionTTL)
	setDur(&c.ApplyTimeout, d.ApplyTimeout)
	if c.RatePerMinute == 0 {
		c.RatePerMinute = d.RatePerMinute
	}
	if c.Raft == (RaftTuning{}) {
		c.Raft = d.Raft
	}
	c.Backup = c.Backup.withDefaults()
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
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
	case c.Limits.MaxPage < c.Limits.DefaultPage || c.Limits.DefaultPage < 1:
		return errors.New("node: page sizes must satisfy 1 <= default <= max")
	case c.Limits.MinPassword < 1 || c.Limits.MaxPassword < c.Limits.MinPassword:
		return errors.New("node: password bounds must satisfy 1 <= min <= max")
	case c.PasswordKDF.Memory < 1024 || c.PasswordKDF.Time < 1 || c.PasswordKDF.Threads < 1:
		return errors.New("node: argon2id needs at least 1 MiB, 1 pass and 1 thread")
	case c.RatePerMinute < 1:
		return errors.New("node: rate per minute must be at least 1")
	case c.Files.MaxSize < 1 || c.Files.MaxUploads < 1 || c.Files.UploadTimeout <= 0 ||
		c.Files.UnclaimedTTL <= 0 || c.Files.SweepInterval <= 0 || c.Files.URLTTL <= 0:
		return errors.New("node: file limits and times must be positive")
	}
	return c.Backup.validate()
}

// maxShards keeps shard numbers within the notice ID's shard bits.
const maxShards = 1000
