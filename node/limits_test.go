package node

import (
	"strings"
	"testing"
	"time"

	pb "github.com/schat/schat/proto"
)

// TestConfig_WithDefaults_PartialLimits fills each zero limit on its own,
// keeping the ones that were set.
func TestConfig_WithDefaults_PartialLimits(t *testing.T) {
	cfg := Config{Limits: Limits{MaxMessage: 10, RecallWindow: time.Second},
		Conns: ConnLimits{SendQueue: 64}}.withDefaults()
	d := DefaultConfig()
	want := d.Limits
	want.MaxMessage, want.RecallWindow = 10, time.Second
	if cfg.Limits != want {
		t.Fatalf("got limits %+v, want %+v", cfg.Limits, want)
	}
	wantConns := d.Conns
	wantConns.SendQueue = 64
	if cfg.Conns != wantConns {
		t.Fatalf("got conns %+v, want %+v", cfg.Conns, wantConns)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}

func TestConfig_Validate_Limits(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(c *Config)
		want string // in the error; "" for none
	}{
		{"defaults", func(*Config) {}, ""},
		{"negative message", func(c *Config) { c.Limits.MaxMessage = -1 }, "max message"},
		{"huge name", func(c *Config) { c.Limits.MaxName = 5000 }, "max name"},
		{"min over max password", func(c *Config) {
			c.Limits.MinPassword, c.Limits.MaxPassword = 20, 10
		}, "min password"},
		{"one member", func(c *Config) { c.Limits.MaxMembers = 1 }, "max members"},
		{"owned", func(c *Config) { c.Limits.MaxOwnedGroups = -3 }, "max owned groups"},
		{"default over max page", func(c *Config) {
			c.Limits.DefaultPage, c.Limits.MaxPage = 80, 40
		}, "default page"},
		{"page over frame", func(c *Config) {
			c.Limits.MaxPage, c.Limits.MaxMessage = 1000, 60000
		}, "a client accepts in one frame"},
		{"profiles", func(c *Config) { c.Limits.MaxProfiles = 2000 }, "max profiles"},
		{"recall", func(c *Config) { c.Limits.RecallWindow = -time.Second }, "recall window"},
		{"tiny frame", func(c *Config) { c.Conns.MaxFrame = 100 }, "max client frame"},
		{"frame under message", func(c *Config) {
			c.Conns.MaxFrame, c.Limits.MaxMessage = 8<<10, 4000
		}, "cannot carry a request"},
		{"frame fits message", func(c *Config) {
			c.Conns.MaxFrame, c.Limits.MaxMessage = 8<<10, 1000
		}, ""},
		{"queue", func(c *Config) { c.Conns.SendQueue = 3 }, "send queue"},
		{"idle", func(c *Config) { c.Conns.IdleTimeout = time.Millisecond }, "idle timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.set(&cfg)
			err := cfg.withDefaults().Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("got %v, want no error", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error about %q", err, tc.want)
			}
		})
	}
}

// TestNode_Limits_Configured shows limits set in the configuration, and
// only those, reaching a real node's answers.
func TestNode_Limits_Configured(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits = Limits{MaxMessage: 5, MaxOwnedGroups: 1, MaxPage: 3, DefaultPage: 2}
	n := startNode(t, cfg)
	ctx := ctxT(t)
	c, l := user(t, n.ClientAddr(), false, "limited")
	if got := l.Limits; got.MaxMessage != 5 || got.MaxPage != 3 || got.MaxName != 64 {
		t.Fatalf("got limits %v at login, want max message 5, page 3, name 64", got)
	}
	g := must(c.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "one"}))(t)
	_, err := c.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "two"})
	wantCode(t, err, pb.Code_LIMIT_EXCEEDED)
	_, err = c.Send(ctx, g.GroupId, "sixsix", "")
	wantCode(t, err, pb.Code_TOO_LONG)
	for i := 0; i < 4; i++ {
		must(c.Send(ctx, g.GroupId, "five5", ""))(t)
	}
	if p := must(c.History(ctx, g.GroupId, 0, 0))(t); len(p.Messages) != 2 || !p.More {
		t.Fatalf("got %d messages (more %v) with no size, want the default 2 and more",
			len(p.Messages), p.More)
	}
	if p := must(c.History(ctx, g.GroupId, 0, 100))(t); len(p.Messages) != 3 {
		t.Fatalf("got %d messages asking for 100, want the most, 3", len(p.Messages))
	}
}
