package node

import (
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/schat/schat/transport"
)

// Limits bound what clients may store and ask for. They are checked on the
// node before a command is proposed; those that depend on state travel in
// the command, so that every replica applies the same ones.
type Limits struct {
	MaxLoginName   int           // runes
	MaxName        int           // display and group names, runes
	MaxDescription int           // runes; also application messages
	MaxMessage     int           // runes of a text message
	MaxPassword    int           // bytes
	MinPassword    int           // bytes
	MaxOwnedGroups int           // groups one user may own
	MaxMembers     int           // members of one group
	DefaultPage    int           // items of a page the client gives no size for
	MaxPage        int           // the most a client may ask for in one page
	MaxProfiles    int           // user IDs per profile request
	RecallWindow   time.Duration // how long a sender may recall
}

// DefaultLimits returns the limits of a node configured with none.
func DefaultLimits() Limits {
	return Limits{
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
	}
}

// withDefaults fills each zero field from DefaultLimits, so that a caller
// may set only the limits it cares about.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	setInt(&l.MaxLoginName, d.MaxLoginName)
	setInt(&l.MaxName, d.MaxName)
	setInt(&l.MaxDescription, d.MaxDescription)
	setInt(&l.MaxMessage, d.MaxMessage)
	setInt(&l.MaxPassword, d.MaxPassword)
	setInt(&l.MinPassword, d.MinPassword)
	setInt(&l.MaxOwnedGroups, d.MaxOwnedGroups)
	setInt(&l.MaxMembers, d.MaxMembers)
	setInt(&l.DefaultPage, d.DefaultPage)
	setInt(&l.MaxPage, d.MaxPage)
	setInt(&l.MaxProfiles, d.MaxProfiles)
	setDur(&l.RecallWindow, d.RecallWindow)
	return l
}

func setInt(p *int, d int) {
	if *p == 0 {
		*p = d
	}
}

// bound is one range Validate checks, named as an operator knows it.
type bound struct {
	name   string
	v      int
	lo, hi int
}

func (b bound) check() error {
	if b.v < b.lo || b.v > b.hi {
		return fmt.Errorf("node: %s must be %d..%d, got %d", b.name, b.lo, b.hi, b.v)
	}
	return nil
}

// clientFrame is the largest frame the Go client accepts by default: a
// page of the longest messages must fit in it.
var clientFrame = transport.DefaultClientConfig().MaxFrame

// validate reports the first limit out of its range. The upper bounds keep
// every answer the node builds from them (a page, a member list) within
// what a client accepts in one frame.
func (l Limits) validate() error {
	for _, b := range []bound{
		{"max login name (runes)", l.MaxLoginName, 1, 256},
		{"max name (runes)", l.MaxName, 1, 1024},
		{"max description (runes)", l.MaxDescription, 1, 64 << 10},
		{"max message (runes)", l.MaxMessage, 1, 64 << 10},
		{"max password (bytes)", l.MaxPassword, 1, 4096},
		{"min password (bytes)", l.MinPassword, 1, l.MaxPassword},
		{"max owned groups", l.MaxOwnedGroups, 1, 100_000},
		// A member list goes whole to members in one frame.
		{"max members", l.MaxMembers, 2, 100_000},
		{"max page", l.MaxPage, 1, 1000},
		{"default page", l.DefaultPage, 1, l.MaxPage},
		{"max profiles", l.MaxProfiles, 1, 1000},
	} {
		if err := b.check(); err != nil {
			return err
		}
	}
	if l.RecallWindow < 0 {
		return fmt.Errorf("node: recall window must be positive, got %v", l.RecallWindow)
	}
	// A page holds messages or group summaries; either is bounded by its
	// longest fields at six bytes a character (UTF-8, or a JSON escape).
	longest := int64(max(maxMessageBytes(l), 6*l.MaxDescription+2<<10))
	if page := int64(l.MaxPage) * longest; page > int64(clientFrame) {
		return fmt.Errorf("node: a page of max page (%d) items of up to %d bytes each "+
			"may reach %d bytes, over the %d a client accepts in one frame",
			l.MaxPage, longest, page, clientFrame)
	}
	return nil
}

// largestRequest is the most bytes a valid request may take: a register
// or a message at their limits, with room for the framing fields.
func (l Limits) largestRequest() int {
	register := utf8.UTFMax*(l.MaxLoginName+2*l.MaxName+l.MaxDescription) + l.MaxPassword
	return max(register, utf8.UTFMax*l.MaxMessage) + requestOverhead
}

// requestOverhead is what a request adds to its text fields: IDs, tags
// and lengths.
const requestOverhead = 1 << 10

// ConnLimits bound each client connection.
type ConnLimits struct {
	// MaxFrame is the largest client frame, in bytes; a longer one closes
	// the connection before it is read.
	MaxFrame int
	// SendQueue is how many frames may wait to be written to one client;
	// a client that lets it fill is disconnected and catches up later.
	SendQueue int
	// IdleTimeout closes a connection that sent nothing, not even a
	// heartbeat, for that long.
	IdleTimeout time.Duration
}

func defaultConns() ConnLimits {
	d := transport.DefaultServerConfig()
	return ConnLimits{MaxFrame: d.MaxFrame, SendQueue: d.SendQueue, IdleTimeout: d.IdleTimeout}
}

func (c ConnLimits) withDefaults() ConnLimits {
	d := defaultConns()
	setInt(&c.MaxFrame, d.MaxFrame)
	setInt(&c.SendQueue, d.SendQueue)
	setDur(&c.IdleTimeout, d.IdleTimeout)
	return c
}

// validate checks the ranges and that a frame can carry every request the
// limits allow.
func (c ConnLimits) validate(l Limits) error {
	for _, b := range []bound{
		{"max client frame (bytes)", c.MaxFrame, 1 << 10, 16 << 20},
		{"send queue (frames)", c.SendQueue, 16, 1 << 20},
	} {
		if err := b.check(); err != nil {
			return err
		}
	}
	if need := l.largestRequest(); c.MaxFrame < need {
		return fmt.Errorf("node: max client frame (%d bytes) cannot carry a request at "+
			"the configured lengths, which may take %d bytes", c.MaxFrame, need)
	}
	if c.IdleTimeout < time.Second {
		return fmt.Errorf("node: idle timeout must be at least 1s, got %v", c.IdleTimeout)
	}
	return nil
}

// serverConfig is the transport server's configuration for handler.
func (n *Node) serverConfig(h transport.Handler) transport.ServerConfig {
	return transport.ServerConfig{Handler: h, TLS: n.cfg.TLS, Logger: n.log,
		MaxFrame: n.cfg.Conns.MaxFrame, SendQueue: n.cfg.Conns.SendQueue,
		IdleTimeout: n.cfg.Conns.IdleTimeout}
}
