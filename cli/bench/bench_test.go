package bench

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
)

func TestRunner_Text_StampRoundTrip(t *testing.T) {
	r := &runner{cfg: Config{MessageSize: 200}}
	base := time.Now()
	at := base.Add(1234567 * time.Microsecond)
	text := r.text(base, at)
	if len(text) != 200 {
		t.Fatalf("got a text of %d bytes, want 200", len(text))
	}
	got, ok := stampOf(base, text)
	if !ok || !got.Equal(at) {
		t.Fatalf("got stamp %v %v, want %v true", got, ok, at)
	}
	if _, ok := stampOf(base, "not stamped"); ok {
		t.Fatal("stampOf read a stamp from an unstamped text")
	}
}

func TestConfig_Validate(t *testing.T) {
	ok := DefaultConfig()
	ok.Addrs = []string{"127.0.0.1:7420"}
	ok.HTTPAddrs = []string{"127.0.0.1:7480"}
	noHTTP := func(c *Config) { c.HTTPAddrs = nil }
	for _, tc := range []struct {
		name      string
		change    func(*Config)
		scenarios []string
		wantErr   bool
	}{
		{"defaults", func(*Config) {}, Scenarios, false},
		{"ceiling needs no server", func(c *Config) { c.Addrs, c.HTTPAddrs = nil, nil },
			[]string{Ceiling}, false},
		{"send needs a server", func(c *Config) { c.Addrs, c.HTTPAddrs = nil, nil },
			[]string{Send}, true},
		{"send without http reads no memory", noHTTP, []string{Send, Latency, Fanout}, false},
		{"connections without http", noHTTP, []string{Connections}, true},
		{"sync without http", noHTTP, []string{SyncCatchUp}, true},
		{"http addresses one short", func(c *Config) { c.Addrs = append(c.Addrs, "b:1") },
			[]string{Send}, true},
		{"profiles of servers without the secret", func(c *Config) { c.ProfileDir = "p" },
			[]string{Send}, true},
		{"profiles with the secret", func(c *Config) { c.ProfileDir, c.Secret = "p", "s" },
			[]string{Send}, false},
		{"ceiling profiles itself", func(c *Config) { c.ProfileDir = "p" },
			[]string{Ceiling}, false},
		{"unknown scenario", func(*Config) {}, []string{"bogus"}, true},
		{"websocket without http", func(c *Config) { c.WebSocket = true; noHTTP(c) },
			[]string{Send}, true},
		{"more groups than clients", func(c *Config) { c.Groups = c.Clients + 1 },
			[]string{Send}, true},
		{"more senders than members", func(c *Config) { c.Senders = c.Members + 1 },
			[]string{Fanout}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.change(&c)
			err := c.Validate(tc.scenarios)
			if got := err != nil; got != tc.wantErr {
				t.Fatalf("got error %v, want error: %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("got %v, want it to wrap ErrInvalidConfig", err)
			}
		})
	}
}

func TestConfig_Writers_DefaultsToSendsInFlight(t *testing.T) {
	c := DefaultConfig().withDefaults()
	if got, want := c.writers(), c.Clients*c.InFlight; got != want {
		t.Fatalf("got %d writers, want clients × in-flight = %d", got, want)
	}
	c.Writers = 7
	if got := c.writers(); got != 7 {
		t.Fatalf("got %d writers, want the 7 set", got)
	}
}

func TestSetOneNodeRatio(t *testing.T) {
	oneNode := map[string]float64{}
	one := []Result{{Scenario: Send, OpsPerSec: 1000},
		{Scenario: Fanout, OpsPerSec: 10, DeliveriesPerSec: 5000},
		{Scenario: Latency, OpsPerSec: 500}}
	three := []Result{{Scenario: Send, OpsPerSec: 400},
		{Scenario: Fanout, OpsPerSec: 1, DeliveriesPerSec: 4000},
		{Scenario: Latency, OpsPerSec: 200}}
	for i := range one {
		setOneNodeRatio(&one[i], 1, oneNode)
	}
	for i := range three {
		setOneNodeRatio(&three[i], 3, oneNode)
	}
	for i, want := range []float64{0.4, 0.8, 0} {
		if got := three[i].OneNodeRatio; got != want {
			t.Errorf("%s on three nodes: one-node ratio %v, want %v",
				three[i].Scenario, got, want)
		}
		if one[i].OneNodeRatio != 0 {
			t.Errorf("%s on one node got a one-node ratio", one[i].Scenario)
		}
	}
}

func TestSplitBatch(t *testing.T) {
	a, b := ceilingCommand(10), ceilingCommand(20)
	ea, _ := proto.Marshal(a)
	eb, _ := proto.Marshal(b)
	batch, _ := proto.Marshal(&pb.Command{Op: &pb.Command_Batch{
		Batch: &pb.CommandBatch{Commands: []*pb.Command{a, b}}}})
	cmds, isBatch := splitBatch(batch)
	if !isBatch || len(cmds) != 2 || !bytes.Equal(cmds[0], ea) || !bytes.Equal(cmds[1], eb) {
		t.Fatalf("split a batch of two into %d commands (batch %v)", len(cmds), isBatch)
	}
	if cmds, isBatch := splitBatch(ea); isBatch || len(cmds) != 1 || !bytes.Equal(cmds[0], ea) {
		t.Fatalf("split one command into %d (batch %v)", len(cmds), isBatch)
	}
}
