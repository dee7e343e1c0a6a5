// Package bench is schat's load generator: it drives a running node or
// cluster with real clients over real connections and measures what a
// deployment can take (acknowledged sends, fan-out deliveries, latency under
// a fixed rate, idle connections, catching up), next to the raw limit of
// raft and bbolt on the same machine (the ceiling scenario).
//
// Run takes a Config with the servers' addresses; starting servers is the
// caller's business (the schat bench command starts `schat serve` child
// processes when given none).
package bench

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"time"
)

// Scenario names, in the order Run runs them when several are asked for:
// the ceiling first, so that every later figure can be given as a ratio to
// it, and send before latency, whose default rate is half of send's.
const (
	Ceiling     = "ceiling"
	Send        = "send"
	Latency     = "latency"
	Fanout      = "fanout"
	Connections = "connections"
	SyncCatchUp = "sync"
)

// Scenarios lists every scenario in the order Run runs them.
var Scenarios = []string{Ceiling, Send, Latency, Fanout, Connections, SyncCatchUp}

// ErrInvalidConfig is wrapped by Validate's errors.
var ErrInvalidConfig = errors.New("bench: invalid config")

// Config configures a benchmark run. Zero fields take DefaultConfig's
// values.
type Config struct {
	// Addrs are the servers' TCP client addresses; clients are spread over
	// them round robin. Required unless only the ceiling runs.
	Addrs []string
	// HTTPAddrs are the servers' HTTP addresses, one per address in Addrs
	// and in the same order, read for /metrics (server memory) and
	// /debug/pprof, and with WebSocket dialled at /ws. The scenarios that
	// measure memory (connections, sync) need them; without them the
	// others report no server memory, and Run warns.
	HTTPAddrs []string
	// WebSocket makes the clients connect over WebSocket instead of TCP.
	WebSocket bool

	// Duration is how long each timed scenario (send, latency, fanout,
	// ceiling) runs after its set-up.
	Duration time.Duration
	// MessageSize is the length of every message text, in bytes.
	MessageSize int

	// Clients and Groups shape send: Clients connections, one user each,
	// spread over Groups groups. Latency uses Groups groups with one
	// sender and one receiver each.
	Clients int
	Groups  int
	// InFlight is how many requests each sending connection keeps
	// outstanding (send, fanout) or how many sends each latency sender
	// may have outstanding before it falls behind its schedule.
	InFlight int

	// Rate is latency's fixed send rate in messages per second. Zero: half
	// of the send figure of the same run, or DefaultRate without one.
	Rate float64

	// Members online in fanout's one group, and Senders among them.
	Members int
	Senders int

	// Conns is how many idle authenticated connections connections opens,
	// logged in as ConnUsers users.
	Conns     int
	ConnUsers int

	// SyncGroups and Unread shape sync: one user in SyncGroups groups with
	// Unread messages waiting in each.
	SyncGroups int
	Unread     int

	// RawWriters is how many entries ceiling proper keeps outstanding,
	// one per goroutine, each entry one command.
	RawWriters int
	// Writers is how many commands ceiling's batched measurement keeps
	// outstanding, one per goroutine. Zero: Clients × InFlight, what send
	// keeps in flight.
	Writers int
	// TempDir is where ceiling puts its raft and bbolt files; it should be
	// on the servers' data disk. Default: the system's temporary directory.
	TempDir string

	// ProfileDir, when set, receives the servers' CPU profiles over each
	// timed scenario and their heap profiles after connections, fetched
	// with Secret, the cluster secret, as the operator's credential.
	ProfileDir string
	Secret     string

	// Progress, when set, receives a live progress line, rewritten in
	// place; it should be a terminal.
	Progress io.Writer
	Logger   *slog.Logger
}

// DefaultRate is latency's rate when neither Rate nor a send figure of the
// same run is given.
const DefaultRate = 1000

// DefaultConfig returns the sizes the targets are stated at.
func DefaultConfig() Config {
	return Config{
		Duration:    10 * time.Second,
		MessageSize: 200,
		Clients:     16,
		Groups:      16,
		InFlight:    32,
		Members:     1000,
		Senders:     1,
		Conns:       20000,
		ConnUsers:   100,
		SyncGroups:  100,
		Unread:      1000,
		RawWriters:  64,
		TempDir:     os.TempDir(),
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	setDefault(&c.Duration, d.Duration)
	for _, p := range []struct{ v, d *int }{
		{&c.MessageSize, &d.MessageSize}, {&c.Clients, &d.Clients}, {&c.Groups, &d.Groups},
		{&c.InFlight, &d.InFlight}, {&c.Members, &d.Members}, {&c.Senders, &d.Senders},
		{&c.Conns, &d.Conns}, {&c.ConnUsers, &d.ConnUsers}, {&c.SyncGroups, &d.SyncGroups},
		{&c.Unread, &d.Unread}, {&c.RawWriters, &d.RawWriters},
	} {
		setDefault(p.v, *p.d)
	}
	setDefault(&c.TempDir, d.TempDir)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// writers is how many commands ceiling keeps outstanding.
func (c Config) writers() int {
	if c.Writers > 0 {
		return c.Writers
	}
	return c.Clients * c.InFlight
}

// round1 rounds v to one decimal, for figures in Params.
func round1(v float64) float64 { return math.Round(v*10) / 10 }

func setDefault[T comparable](p *T, d T) {
	var zero T
	if *p == zero {
		*p = d
	}
}

// needsServers reports whether any of scenarios drives servers: all but
// the ceiling do.
func needsServers(scenarios []string) bool {
	return slices.ContainsFunc(scenarios, func(s string) bool { return s != Ceiling })
}

// memoryScenarios are the scenarios whose main figure is the servers'
// memory, read from their HTTP port.
var memoryScenarios = []string{Connections, SyncCatchUp}

// Validate reports the first setting that cannot work for scenarios.
func (c Config) Validate(scenarios []string) error {
	for _, s := range scenarios {
		if !slices.Contains(Scenarios, s) {
			return fmt.Errorf("%w: unknown scenario %q (want one of %v)",
				ErrInvalidConfig, s, Scenarios)
		}
		if s != Ceiling && len(c.Addrs) == 0 {
			return fmt.Errorf("%w: %s needs a server address", ErrInvalidConfig, s)
		}
		if slices.Contains(memoryScenarios, s) && len(c.HTTPAddrs) == 0 {
			return fmt.Errorf("%w: %s measures server memory and needs the servers' "+
				"HTTP addresses", ErrInvalidConfig, s)
		}
	}
	switch {
	case len(c.HTTPAddrs) > 0 && len(c.HTTPAddrs) != len(c.Addrs):
		return fmt.Errorf("%w: %d HTTP addresses for %d servers: give one per server, "+
			"in the same order", ErrInvalidConfig, len(c.HTTPAddrs), len(c.Addrs))
	case needsServers(scenarios) && c.ProfileDir != "" && len(c.HTTPAddrs) > 0 &&
		c.Secret == "":
		return fmt.Errorf("%w: the servers' profiles need the cluster secret",
			ErrInvalidConfig)
	case c.WebSocket && len(c.HTTPAddrs) == 0:
		return fmt.Errorf("%w: WebSocket needs the servers' HTTP addresses", ErrInvalidConfig)
	case c.Duration < 0 || c.MessageSize < 1 || c.Rate < 0:
		return fmt.Errorf("%w: negative duration or rate, or empty messages", ErrInvalidConfig)
	case c.Clients < c.Groups:
		return fmt.Errorf("%w: %d clients cannot fill %d groups", ErrInvalidConfig,
			c.Clients, c.Groups)
	case c.Senders > c.Members:
		return fmt.Errorf("%w: %d senders among %d members", ErrInvalidConfig,
			c.Senders, c.Members)
	case c.ConnUsers > c.Conns:
		return fmt.Errorf("%w: %d users for %d connections", ErrInvalidConfig,
			c.ConnUsers, c.Conns)
	}
	return nil
}
