package bench

import (
	"errors"
	"testing"
	"time"
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
	for _, tc := range []struct {
		name      string
		change    func(*Config)
		scenarios []string
		wantErr   bool
	}{
		{"defaults", func(*Config) {}, Scenarios, false},
		{"ceiling needs no server", func(c *Config) { c.Addrs = nil }, []string{Ceiling}, false},
		{"send needs a server", func(c *Config) { c.Addrs = nil }, []string{Send}, true},
		{"unknown scenario", func(*Config) {}, []string{"bogus"}, true},
		{"websocket without http", func(c *Config) { c.WebSocket = true }, []string{Send}, true},
		{"more groups than clients", func(c *Config) { c.Groups = c.Clients + 1 }, []string{Send}, true},
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
