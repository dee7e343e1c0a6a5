package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/schat/schat/node"
)

// limitFlags are the `schat serve` flags of what clients may store and
// ask for, and of each client connection. The node checks their ranges.
func limitFlags(d node.Config) []cli.Flag {
	l, c, f := d.Limits, d.Conns, d.Files
	intFlag := func(name string, v int, usage string) cli.Flag {
		return &cli.IntFlag{Name: name, Value: v, EnvVars: []string{envName(name)},
			Usage: usage}
	}
	durFlag := func(name string, v time.Duration, usage string) cli.Flag {
		return &cli.DurationFlag{Name: name, Value: v, EnvVars: []string{envName(name)},
			Usage: usage}
	}
	return []cli.Flag{
		intFlag("max-login-name", l.MaxLoginName, "longest login name, in characters"),
		intFlag("max-name", l.MaxName, "longest display or group name, in characters"),
		intFlag("max-description", l.MaxDescription,
			"longest description or application message, in characters"),
		intFlag("max-message", l.MaxMessage, "longest text message, in characters"),
		intFlag("min-password", l.MinPassword, "shortest password, in bytes"),
		intFlag("max-password", l.MaxPassword, "longest password, in bytes"),
		intFlag("max-owned-groups", l.MaxOwnedGroups, "groups one user may own"),
		intFlag("max-members", l.MaxMembers, "members of one group"),
		intFlag("page-size", l.DefaultPage, "items of a page when the client asks for no size"),
		intFlag("max-page", l.MaxPage, "most items a client may ask for in one page"),
		intFlag("max-profiles", l.MaxProfiles, "user IDs in one profile request"),
		durFlag("recall-window", l.RecallWindow, "how long a sender may recall a message"),
		durFlag("session-ttl", d.SessionTTL,
			"how long a login stays valid; its connections end when it expires"),
		intFlag("max-client-frame", c.MaxFrame,
			"largest frame a client may send, in bytes; a larger one closes the connection"),
		intFlag("send-queue", c.SendQueue,
			"frames queued to one client; a client that lets it fill is disconnected"),
		durFlag("idle-timeout", c.IdleTimeout,
			"close a connection silent this long (schat's clients heartbeat every 30s)"),
		intFlag("max-spools", f.MaxSpools,
			"uploads this node receives at once; one more is refused before its body is read"),
		intFlag("max-user-spools", f.MaxUserSpools, "uploads one user sends to a node at once"),
		durFlag("upload-idle-timeout", f.BodyIdle,
			"end an upload whose body sends nothing for this long"),
	}
}

// The flags of limitFlags must not be zero: the node would read zero as
// "the default", not as what was asked for.
var (
	limitIntFlags = []string{"max-login-name", "max-name", "max-description",
		"max-message", "min-password", "max-password", "max-owned-groups", "max-members",
		"page-size", "max-page", "max-profiles", "max-client-frame", "send-queue",
		"max-hashes", "max-spools", "max-user-spools"}
	limitDurationFlags = []string{"recall-window", "session-ttl", "idle-timeout", "hash-wait",
		"upload-idle-timeout"}
)

// envName is the environment variable of a serve flag.
func envName(flag string) string {
	return "SCHAT_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyLimits copies the limit flags into cfg; the node checks their
// ranges.
func applyLimits(c *cli.Context, cfg *node.Config) error {
	for _, name := range limitIntFlags {
		if c.Int(name) == 0 {
			return fmt.Errorf("--%s must not be zero", name)
		}
	}
	for _, name := range limitDurationFlags {
		if c.Duration(name) == 0 {
			return fmt.Errorf("--%s must not be zero", name)
		}
	}
	l := &cfg.Limits
	l.MaxLoginName = c.Int("max-login-name")
	l.MaxName = c.Int("max-name")
	l.MaxDescription = c.Int("max-description")
	l.MaxMessage = c.Int("max-message")
	l.MinPassword = c.Int("min-password")
	l.MaxPassword = c.Int("max-password")
	l.MaxOwnedGroups = c.Int("max-owned-groups")
	l.MaxMembers = c.Int("max-members")
	l.DefaultPage = c.Int("page-size")
	l.MaxPage = c.Int("max-page")
	l.MaxProfiles = c.Int("max-profiles")
	l.RecallWindow = c.Duration("recall-window")
	cfg.SessionTTL = c.Duration("session-ttl")
	cfg.Conns = node.ConnLimits{MaxFrame: c.Int("max-client-frame"),
		SendQueue: c.Int("send-queue"), IdleTimeout: c.Duration("idle-timeout")}
	cfg.Files.MaxSpools = c.Int("max-spools")
	cfg.Files.MaxUserSpools = c.Int("max-user-spools")
	cfg.Files.BodyIdle = c.Duration("upload-idle-timeout")
	return nil
}
